--- The arguments of `:Lofi generate`: `key=value` words are options, the other words form the
--- prompt.
---
--- A word is read as an option when the part before its first "=" looks like a name (a letter
--- or "_", then letters, digits or "_"); such a word with a key that is not an option is an
--- error naming the valid keys, as `generate()` does for an unknown option. Words like "=",
--- "4=4" or "a+b=c" stay in the prompt, and so does every word after a lone `--`:
--- `:Lofi generate duration=10 -- mood=calm` sends the prompt "mood=calm".
---
--- A value may be quoted to hold spaces: `key="C major"` or `lyrics='[verse] rain on the
--- glass'` (the words up to the one that ends with the same quote, joined by one space each;
--- `key=C\ major` works too). In `lyrics=`, the two characters `\n` are a line break.
local config = require("lofi.config")
local song_spec = require("lofi.song_spec")

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
  backend = { option = "backend", parse = as_text },
}
for name, field in pairs(song_spec.fields) do
  M.keys[field.key] = { option = name, parse = field.type == "string" and as_text or tonumber }
end
M.keys.lyrics.parse = function(text)
  return (text:gsub("\\n", "\n"))
end

-- Completion of `key=value` arguments whose values are a short list.
local value_choices = {
  scheduler = config.choices("generate", "scheduler"),
  format = config.choices("generate", "format"),
  backend = function()
    return require("lofi.backend").names()
  end,
  shift = { "1", "2", "3" },
  time_signature = { "2", "3", "4", "6" },
}

---@return string[] names the valid keys, sorted
function M.key_names()
  local names = vim.tbl_keys(M.keys)
  table.sort(names)
  return names
end

---@class lofi.KeyValueWord
---@field key string the part before the first "="
---@field value string the part after it (maybe "")
---@field arg string the whole word

--- Where a quoted value ends.
---@param value string the value of `args[i]`, which starts with `quote`
---@param args string[]
---@param i integer
---@param quote string
---@return integer? last the index of the word that ends the quoted value
local function closing(value, args, i, quote)
  if #value > 1 and vim.endswith(value, quote) then
    return i
  end
  for j = i + 1, #args do
    if vim.endswith(args[j], quote) then
      return j
    end
  end
  return nil
end

--- Split command words by the rule above (shared by `:Lofi generate`, `:Lofi radio` and the
--- task commands): the `key=value` words, and the other words, each in their order.
---@param args string[]
---@return lofi.KeyValueWord[] options
---@return string[] words
---@return string? err a quoted value that is not closed
function M.split(args)
  local options, words = {}, {}
  local words_only = false
  local i = 1
  while i <= #args do
    local arg = args[i]
    local key, value = arg:match("^([%a_][%w_]*)=(.*)$")
    if words_only or not key then
      if arg == "--" and not words_only then
        words_only = true
      else
        words[#words + 1] = arg
      end
    else
      local quote = value:match("^([\"'])")
      if quote then
        local last = closing(value, args, i, quote)
        if not last then
          return options, words, string.format("`%s=` has no closing %s", key, quote)
        end
        arg = table.concat(vim.list_slice(args, i, last), " ")
        value = arg:sub(#key + 3, -2)
        i = last
      end
      options[#options + 1] = { key = key, value = value, arg = arg }
    end
    i = i + 1
  end
  return options, words, nil
end

---@alias lofi.ReadOption fun(spec: table, key: string, value: string): any, string?

--- Read the arguments of a prompt command (`:Lofi generate`, `:Lofi radio`): each `key=value`
--- word sets `opts[keys[key].option]` to what `read` makes of its value (nil and a message for
--- a bad value); the other words are joined into `opts.prompt`.
---@param args string[]
---@param keys table<string, {option: string}>
---@param read lofi.ReadOption
---@return table? opts
---@return string? err
function M.read_prompt_command(args, keys, read)
  local options, words, split_err = M.split(args)
  if split_err then
    return nil, split_err
  end
  local opts = {}
  for _, word in ipairs(options) do
    local spec = keys[word.key]
    if not spec then
      local valid = vim.tbl_keys(keys)
      table.sort(valid)
      return nil,
        string.format(
          "unknown key `%s` in %q (valid keys: %s; put prompt words that contain '=' after --)",
          word.key,
          word.arg,
          table.concat(valid, ", ")
        )
    end
    local value, err = read(spec, word.key, word.value)
    if value == nil then
      return nil, err
    end
    opts[spec.option] = value
  end
  if #words > 0 then
    opts.prompt = table.concat(words, " ")
  end
  return opts, nil
end

--- Split `:Lofi generate` arguments into options and the prompt.
---@param args string[]
---@return lofi.GenerateOpts? opts
---@return string? err
function M.parse(args)
  return M.read_prompt_command(args, M.keys, function(spec, key, value)
    if value == "" and key ~= "variant" then -- `variant=`: the base model for this track
      return nil, string.format("`%s=` needs a value", key)
    end
    local parsed = spec.parse(value)
    if parsed == nil then
      return nil, string.format("`%s` must be a number, got %q", key, value)
    end
    return parsed
  end)
end

--- Completion of one argument of `:Lofi generate`.
---@param arglead string
---@return string[]
function M.complete(arglead)
  local key = arglead:match("^([%w_]+)=")
  local choices = key and value_choices[key]
  if type(choices) == "function" then
    choices = choices()
  end
  if choices then
    return vim.tbl_map(function(value)
      return key .. "=" .. value
    end, choices)
  end
  return vim.tbl_map(function(name)
    return name .. "="
  end, M.key_names())
end

return M
