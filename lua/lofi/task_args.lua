--- The arguments of the audio-task commands (`:Lofi retake`, `repaint`, `extend`, `remix`,
--- `edit`): `key=value` words are options, the other words are positional (the region of
--- repaint, the source of remix, the prompt of remix and edit). Everything is checked here,
--- before anything is sent: a bad argument gets a message naming it.
---
--- Times are seconds ("12", "12.5") or minutes and seconds ("1:30", "1:30.5"). As for
--- `:Lofi generate`, a word is an option when the part before its "=" is a name, and every
--- word after a lone `--` is a prompt word (`lofi.generate_args.split`).
local generate_args = require("lofi.generate_args")
local sources = require("lofi.sources")
local task_spec = require("lofi.task_spec")

local M = {}

--- A plain decimal number ("12", "-0.5", ".5"); nil for anything else (no hex, exponents,
--- inf or nan, which `tonumber` would take).
---@param text string
---@return number?
local function decimal(text)
  if text:match("^[+-]?%d+%.?%d*$") or text:match("^[+-]?%.%d+$") then
    return tonumber(text)
  end
  return nil
end

--- Seconds from "12", "12.5", "1:30" or "1:30.5" (the seconds part below 60); nil when the
--- text is none of these or negative.
---@param text string
---@return number?
function M.parse_time(text)
  local minutes, seconds = text:match("^(%d+):(%d%d%.?%d*)$")
  if minutes then
    local secs = tonumber(seconds)
    if not secs or secs >= 60 then
      return nil
    end
    return tonumber(minutes) * 60 + secs
  end
  local value = decimal(text)
  if value == nil or value < 0 then
    return nil
  end
  return value
end

---@alias lofi.TaskArgParser fun(text: string): any, string?

---@param what string
---@param ok fun(value: number): boolean
---@return lofi.TaskArgParser
local function number_in(what, ok)
  return function(text)
    local value = decimal(text)
    if value == nil or not ok(value) then
      return nil, "must be " .. what
    end
    return value
  end
end

---@type lofi.TaskArgParser
local function time(text)
  local value = M.parse_time(text)
  if value == nil then
    return nil, "must be seconds (12.5) or minutes:seconds (1:30)"
  end
  return value
end

local function fraction(v)
  return v >= 0 and v <= 1
end

local function seed(v)
  return v == math.floor(v) and v >= 0 and v <= 4294967295
end

--- `key=value` arguments: the `generate()` option each sets (nil: handled by the command) and
--- how its value is read.
---@type table<string, {option?: string, parse: lofi.TaskArgParser}>
M.keys = {
  variance = { option = "retake_variance", parse = number_in("a number from 0 to 1", fraction) },
  retake_seed = { option = "retake_seed", parse = number_in("an integer from 0 to 2^32-1", seed) },
  seed = { option = "seed", parse = number_in("an integer from 0 to 2^32-1", seed) },
  steps = {
    option = "steps",
    parse = number_in("an integer from 1 to 200", function(v)
      return v == math.floor(v) and v >= 1 and v <= 200
    end),
  },
  left = { option = "extend_left", parse = time },
  right = { option = "extend_right", parse = time },
  strength = {
    option = "ref_strength",
    parse = number_in("a number from 0 up to (not including) 1", function(v)
      return v >= 0 and v < 1
    end),
  },
  n_min = { option = "edit_n_min", parse = number_in("a number from 0 to 1", fraction) },
  n_max = { option = "edit_n_max", parse = number_in("a number from 0 to 1", fraction) },
  n_avg = {
    option = "edit_n_avg",
    parse = number_in("an integer from 1 to 8", function(v)
      return v == math.floor(v) and v >= 1 and v <= 8
    end),
  },
  preset = {
    parse = function(text)
      if task_spec.EDIT_PRESETS[text] then
        return text
      end
      return nil, "must be remix or only_lyrics"
    end,
  },
  track = {
    parse = function(text)
      if sources.is_track_id(text) then
        return text
      end
      return nil, "must be a track id (24 hex digits; <Tab> completes them)"
    end,
  },
}

---@class lofi.TaskCommand
---@field task lofi.Task
---@field keys string[] the `key=` arguments it takes
---@field usage string

--- The commands, by subcommand name.
---@type table<string, lofi.TaskCommand>
M.commands = {
  retake = {
    task = "retake",
    keys = { "variance", "retake_seed", "track" },
    usage = "retake [variance=V] [retake_seed=N] [track=ID]",
  },
  repaint = {
    task = "repaint",
    keys = { "variance", "retake_seed", "track" },
    usage = "repaint {start} {end} [variance=V] [retake_seed=N] [track=ID]",
  },
  extend = {
    task = "extend",
    keys = { "left", "right", "retake_seed", "track" },
    usage = "extend [left={sec}] [right={sec}] [retake_seed=N] [track=ID]",
  },
  remix = {
    task = "audio2audio",
    keys = { "strength", "seed", "steps" },
    usage = "remix {file-or-track} [{prompt}] [strength=S] [seed=N] [steps=N]",
  },
  edit = {
    task = "edit",
    keys = { "preset", "n_min", "n_max", "n_avg", "seed", "track" },
    usage = "edit {new prompt} [preset=remix|only_lyrics] [n_min=X] [n_max=X] [n_avg=N] [track=ID]",
  },
}

--- What a task command asks for: the `generate()` options (all but `src`), and the track or
--- file to work on when the arguments name one.
---@class lofi.TaskRequest
---@field opts lofi.GenerateOpts
---@field src? string `track=ID`, or the file or track of `:Lofi remix`

---@param name string
---@param words string[]
---@param request lofi.TaskRequest
---@param picked boolean the track comes from the `:Lofi tracks` picker
---@return string? err
local function positional(name, words, request, picked)
  local opts = request.opts
  if name == "repaint" then
    if #words ~= 2 then
      return string.format(
        "repaint needs {start} and {end} (seconds or m:ss, e.g. :Lofi repaint 0:10 0:20), got %d "
          .. "argument(s)",
        #words
      )
    end
    local start, finish = M.parse_time(words[1]), M.parse_time(words[2])
    if not start or not finish then
      local bad = start and words[2] or words[1]
      return string.format("%q is not a time: use seconds (12.5) or minutes:seconds (1:30)", bad)
    end
    if finish <= start then
      return string.format("the end (%s) must come after the start (%s)", words[2], words[1])
    end
    opts.repaint_start, opts.repaint_end = start, finish
  elseif name == "remix" then
    if not picked then
      if #words == 0 then
        return "remix needs a file or a track id: :Lofi remix {file-or-track} [{prompt}]"
      end
      request.src = table.remove(words, 1)
    end
    if #words > 0 then
      opts.prompt = table.concat(words, " ")
    end
  elseif name == "edit" then
    if #words == 0 then
      return "edit needs the new prompt: :Lofi edit {new prompt}"
    end
    opts.edit_prompt = table.concat(words, " ")
  elseif #words > 0 then
    return string.format(
      "unexpected argument %q (usage: :Lofi %s)",
      words[1],
      M.commands[name].usage
    )
  end
  return nil
end

--- Read a task command's arguments.
---@param name string "retake", "repaint", "extend", "remix" or "edit"
---@param args string[]
---@param picked? boolean the track comes from the `:Lofi tracks` picker (no `track=`; every
---   word of remix is a prompt word)
---@return lofi.TaskRequest? request
---@return string? err
function M.parse(name, args, picked)
  local command = M.commands[name]
  ---@type lofi.TaskRequest
  local request = { opts = { task = command.task } }
  local options, words, split_err = generate_args.split(args)
  if split_err then
    return nil, split_err
  end
  local values = {}
  for _, word in ipairs(options) do
    local key, text = word.key, word.value
    local allowed = vim.list_contains(command.keys, key) and not (picked and key == "track")
    if not allowed then
      local valid = vim.tbl_filter(function(k)
        return not (picked and k == "track")
      end, command.keys)
      return nil,
        string.format(
          "unknown key `%s` in %q for %s (valid keys: %s)",
          key,
          word.arg,
          name,
          table.concat(valid, ", ")
        )
    end
    if text == "" then
      return nil, string.format("`%s=` needs a value", key)
    end
    local value, problem = M.keys[key].parse(text)
    if value == nil then
      return nil, string.format("`%s` %s, got %q", key, problem, text)
    end
    values[key] = value
  end
  local err = positional(name, words, request, picked == true)
  if err then
    return nil, err
  end
  for key, value in pairs(values) do
    local option = M.keys[key].option
    if option then
      request.opts[option] = value
    end
  end
  request.src = values.track or request.src
  local opts = request.opts
  if name == "extend" then
    if opts.extend_left == nil and opts.extend_right == nil then
      opts.extend_right = 30
    end
    if (opts.extend_left or 0) <= 0 and (opts.extend_right or 0) <= 0 then
      return nil, "extend needs left= or right= above 0 seconds"
    end
  elseif name == "edit" then
    local preset = task_spec.EDIT_PRESETS[values.preset or "remix"]
    opts.edit_n_min = opts.edit_n_min or preset.n_min
    opts.edit_n_max = opts.edit_n_max or preset.n_max
    if opts.edit_n_min >= opts.edit_n_max then
      return nil,
        string.format("`n_min` (%g) must be below `n_max` (%g)", opts.edit_n_min, opts.edit_n_max)
    end
  end
  return request, nil
end

--- Completion of one argument of a task command.
---@param name string
---@param arglead string
---@param words string[] the command line's words before `arglead`, the subcommand first
---@param picked? boolean completing `:Lofi tracks {name} ...`
---@return string[]
function M.complete(name, arglead, words, picked)
  local command = M.commands[name]
  if arglead:match("^preset=") and vim.list_contains(command.keys, "preset") then
    return { "preset=only_lyrics", "preset=remix" }
  end
  if arglead:match("^track=") and not picked then
    local ids = vim.tbl_filter(sources.is_track_id, require("lofi.track_complete").candidates())
    return vim.tbl_map(function(id)
      return "track=" .. id
    end, ids)
  end
  local items = {}
  if name == "remix" and not picked and #words == 1 then
    items = vim.fn.getcompletion(arglead, "file")
    local ids = vim.tbl_filter(sources.is_track_id, require("lofi.track_complete").candidates())
    vim.list_extend(items, ids)
    return items
  end
  for _, key in ipairs(command.keys) do
    if not (picked and key == "track") then
      items[#items + 1] = key .. "="
    end
  end
  return items
end

return M
