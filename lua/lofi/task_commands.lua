--- The audio-task subcommands of `:Lofi` (retake, repaint, extend, remix, edit) and the
--- `:Lofi tracks {task}` picker: arguments are read by `lofi.task_args`, the work is a
--- `lofi.generate()` call with `task` and `src`, so events, progress and errors are those of
--- `:Lofi generate`.
---
--- Without `track=ID` a command works on the current track: the one playing or played last in
--- this session, else the last one made in this session, else the most recently used cached
--- track. `:Lofi remix` names its source itself.
local errors = require("lofi.errors")
local sources = require("lofi.sources")
local task_args = require("lofi.task_args")
local user = require("lofi.user")

local M = {}

--- The current track as a `src` (see the module's description).
---@param cb fun(err: lofi.Error?, src: string?)
function M.current(cb)
  local src = sources.of_track(require("lofi.player").last())
    or sources.of_track(require("lofi.generations").last_track())
  if src then
    vim.schedule(function()
      cb(nil, src)
    end)
    return
  end
  require("lofi").tracks(function(err, tracks)
    local found = not err and sources.of_track((tracks or {})[1]) or nil
    if err or not found then
      cb(err or errors.new(errors.client.NO_TRACK, "no track yet to work on"), nil)
      return
    end
    cb(nil, found)
  end)
end

---@param track lofi.Track
---@return string
local function format_track(track)
  local when = track.created_at and os.date("%Y-%m-%d %H:%M", math.floor(track.created_at)) or ""
  local task = (track.task and track.task ~= "text2music") and (track.task .. ", ") or ""
  return string.format(
    "%s  (%s%.0f s, seed %s)  %s",
    track.prompt or "?",
    task,
    track.duration_sec or 0,
    tostring(track.seed),
    when
  )
end

--- Show the cached tracks with |vim.ui.select()|; `on_pick(track)` gets the one picked.
---@param title string
---@param on_pick fun(track: lofi.Track)
function M.pick(title, on_pick)
  require("lofi").tracks(function(err, tracks)
    if err then
      user.notify_error(err)
      return
    end
    if not tracks or #tracks == 0 then
      user.notify("no tracks yet: :Lofi generate {prompt}")
      return
    end
    vim.ui.select(tracks, { prompt = title, format_item = format_track }, function(track)
      if track then
        on_pick(track)
      end
    end)
  end)
end

---@param request lofi.TaskRequest
---@param src string
local function start(request, src)
  local opts = vim.deepcopy(request.opts)
  opts.src = src
  -- No callback: errors (the daemon's too) are shown as for :Lofi generate.
  require("lofi").generate(opts)
end

--- Run a task command with its arguments.
---@param name string
---@param args string[]
function M.run(name, args)
  local request, err = task_args.parse(name, args)
  if not request then
    user.notify_error(errors.new(errors.client.INVALID_OPTION, err --[[@as string]]))
    return
  end
  if request.src then
    start(request, request.src)
    return
  end
  M.current(function(current_err, src)
    if current_err then
      user.notify_error(current_err)
    else
      start(request, src --[[@as string]])
    end
  end)
end

--- `:Lofi tracks {name} [args]`: read the arguments, pick a cached track, run the task on it.
---@param name string
---@param args string[]
function M.run_picked(name, args)
  local request, err = task_args.parse(name, args, true)
  if not request then
    user.notify_error(errors.new(errors.client.INVALID_OPTION, err --[[@as string]]))
    return
  end
  M.pick("lofi tracks: " .. name, function(track)
    local src = sources.of_track(track)
    if src then
      start(request, src)
    end
  end)
end

--- The subcommands, in the shape of `lofi.commands`.
---@return table<string, lofi.Subcommand>
function M.subcommands()
  local subs = {}
  for name, command in pairs(task_args.commands) do
    subs[name] = {
      usage = command.usage,
      run = function(args)
        M.run(name, args)
      end,
      complete = function(arglead, words)
        return task_args.complete(name, arglead, words)
      end,
    }
  end
  return subs
end

return M
