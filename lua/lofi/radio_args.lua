--- The arguments of `:Lofi radio`: an action (`stop`, `skip`, `pause`, `resume`, `like [all]`,
--- `save [FILE]`, `status`), or a station to start: `key=value` words are options, the other
--- words form the prompt (`:Lofi radio rainy jazzhop segment=20`). A prompt that starts with an
--- action's name goes after `--` (`:Lofi radio -- stop motion`), as do prompt words with "="
--- (the words are split as `:Lofi generate`'s: `lofi.generate_args`).
local generate_args = require("lofi.generate_args")

local M = {}

--- Actions and how many arguments each takes at most.
---@type table<string, integer>
M.actions = { stop = 0, skip = 0, pause = 0, resume = 0, like = 1, save = 1, status = 0 }

--- `key=value` options of a station and the `radio.start()` option each sets.
---@type table<string, {option: string, integer?: boolean}>
M.keys = {
  segment = { option = "segment" },
  context = { option = "context" },
  crossfade = { option = "crossfade" },
  variation = { option = "variation", integer = true },
  seed = { option = "seed", integer = true },
  steps = { option = "steps", integer = true },
  ahead = { option = "ahead", integer = true },
}

---@return string[]
local function sorted_keys(tbl)
  local names = vim.tbl_keys(tbl)
  table.sort(names)
  return names
end

---@class lofi.RadioCommand
---@field action "start"|"stop"|"skip"|"pause"|"resume"|"like"|"save"|"status"
---@field opts? lofi.RadioStartOpts for "start"
---@field all? boolean for "like"
---@field path? string for "save"

--- Parse `:Lofi radio` arguments.
---@param args string[]
---@return lofi.RadioCommand? command
---@return string? err
function M.parse(args)
  local first = args[1]
  if first and M.actions[first] then
    local rest = vim.list_slice(args, 2)
    if #rest > M.actions[first] then
      return nil,
        string.format(
          "`:Lofi radio %s` takes %s (a prompt that starts with %q goes after --)",
          first,
          M.actions[first] == 0 and "no arguments" or "one argument",
          first
        )
    end
    if first == "like" then
      if rest[1] ~= nil and rest[1] ~= "all" then
        return nil, string.format("`:Lofi radio like` takes `all` or nothing, got %q", rest[1])
      end
      return { action = "like", all = rest[1] == "all" }, nil
    end
    if first == "save" then
      return { action = "save", path = rest[1] }, nil
    end
    return { action = first }, nil
  end
  local opts, err = generate_args.read_prompt_command(args, M.keys, function(spec, key, value)
    local number = tonumber(value)
    if value == "" then
      return nil, string.format("`%s=` needs a value", key)
    elseif number == nil or number ~= number or math.abs(number) == math.huge then
      return nil, string.format("`%s` must be a number, got %q", key, value)
    elseif spec.integer and number ~= math.floor(number) then
      return nil, string.format("`%s` must be a whole number, got %q", key, value)
    end
    return number
  end)
  if not opts then
    return nil, err
  end
  return { action = "start", opts = opts }, nil
end

--- Completion of one argument of `:Lofi radio` (`args`: the words before it, "radio" first).
---@param arglead string
---@param args string[]
---@return string[]
function M.complete(arglead, args)
  local action = args[2]
  if action == "like" and #args == 2 then
    return { "all" }
  end
  if action == "save" and #args == 2 then
    return vim.fn.getcompletion(arglead, "file")
  end
  if action and M.actions[action] then
    return {}
  end
  local keys = vim.tbl_map(function(name)
    return name .. "="
  end, sorted_keys(M.keys))
  if #args <= 1 then
    return vim.list_extend(sorted_keys(M.actions), keys)
  end
  return keys
end

return M
