--- The arguments of `:Lofi generate`: `key=value` words are options, the other words form the
--- prompt.
---
--- A word is read as an option when the part before its first "=" looks like a name (a letter
--- or "_", then letters, digits or "_"); such a word with a key that is not an option is an
--- error naming the valid keys, as `generate()` does for an unknown option. Words like "=",
--- "4=4" or "a+b=c" stay in the prompt, and so does every word after a lone `--`:
--- `:Lofi generate duration=10 -- mood=calm` sends the prompt "mood=calm".
local config = require("lofi.config")

local M = {}

local function as_text(text)
  return text
end

--- `key=value` arguments and how to read their values.
---@type table<string, {option: string, parse: fun(text: string): any}>
M.keys = {
  duration = { option = "duration", parse = tonumber },
  seed = { option = "seed", parse = tonumber },
  steps = { option = "steps", parse = tonumber },
  scheduler = { option = "scheduler", parse = as_text },
  format = { option = "format", parse = as_text },
  variant = { option = "variant", parse = as_text },
}

-- Completion of `key=value` arguments whose values the option schema lists.
local value_choices = {
  scheduler = config.choices("generate", "scheduler"),
  format = config.choices("generate", "format"),
}

---@return string[] names the valid keys, sorted
function M.key_names()
  local names = vim.tbl_keys(M.keys)
  table.sort(names)
  return names
end

--- Split `:Lofi generate` arguments into options and the prompt.
---@param args string[]
---@return lofi.GenerateOpts? opts
---@return string? err
function M.parse(args)
  local opts, words = {}, {}
  local prompt_only = false
  for _, arg in ipairs(args) do
    local key, value = arg:match("^([%a_][%w_]*)=(.*)$")
    if prompt_only or not key then
      if arg == "--" and not prompt_only then
        prompt_only = true
      else
        words[#words + 1] = arg
      end
    else
      local spec = M.keys[key]
      if not spec then
        return nil,
          string.format(
            "unknown key `%s` in %q (valid keys: %s; put prompt words that contain '=' after --)",
            key,
            arg,
            table.concat(M.key_names(), ", ")
          )
      end
      local parsed = spec.parse(value)
      if value == "" and key ~= "variant" then -- `variant=`: the base model for this track
        return nil, string.format("`%s=` needs a value", key)
      elseif parsed == nil then
        return nil, string.format("`%s` must be a number, got %q", key, value)
      end
      opts[spec.option] = parsed
    end
  end
  if #words > 0 then
    opts.prompt = table.concat(words, " ")
  end
  return opts, nil
end

--- Completion of one argument of `:Lofi generate`.
---@param arglead string
---@return string[]
function M.complete(arglead)
  local key = arglead:match("^(%w+)=")
  if key and value_choices[key] then
    return vim.tbl_map(function(value)
      return key .. "=" .. value
    end, value_choices[key])
  end
  return vim.tbl_map(function(name)
    return name .. "="
  end, M.key_names())
end

return M
