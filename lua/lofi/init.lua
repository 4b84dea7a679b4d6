--- lofi.nvim: generate lofi music with a local model and play it, without blocking the editor.
---
--- The public Lua API. The work is done by one module per job: `lofi.generations` (the
--- generations in flight; every `generate()` callback runs exactly once), `lofi.install` (the
--- `:Lofi setup` installation), `lofi.routing` (daemon notifications become events, see
--- `lofi.events`), `lofi.rpc` and `lofi.client` (the daemon), `lofi.player` (playback),
--- `lofi.radio` (the endless station, `M.radio`).
local client = require("lofi.client")
local config = require("lofi.config")
local errors = require("lofi.errors")
local events = require("lofi.events")
local generations = require("lofi.generations")
local install = require("lofi.install")
local log = require("lofi.log")
local player = require("lofi.player")
local progress = require("lofi.progress")
local radio = require("lofi.radio")
local redraw = require("lofi.redraw")
local routing = require("lofi.routing")
local rpc = require("lofi.rpc")
local sources = require("lofi.sources")
local status = require("lofi.status")
local user = require("lofi.user")

local M = {}

--- Create the "Lofi" augroup (cleared first, so this is safe to repeat).
local function create_autocmds()
  local group = vim.api.nvim_create_augroup("Lofi", { clear = true })
  vim.api.nvim_create_autocmd("VimLeavePre", {
    group = group,
    desc = "lofi.nvim: stop the player and the daemon",
    callback = function()
      M.shutdown()
    end,
  })
  vim.api.nvim_create_autocmd("VimResized", {
    group = group,
    desc = "lofi.nvim: move the progress window",
    callback = function()
      generations.refresh_progress()
    end,
  })
end

--- Configure lofi.nvim. Optional: the defaults apply without it. Raises an error naming the
--- first invalid option. Safe to call again (each call starts from the defaults; a running
--- daemon whose options changed is stopped and starts again on next use).
---@param opts? lofi.UserConfig
function M.setup(opts)
  if vim.fn.has("nvim-0.10") ~= 1 then
    user.notify("lofi.nvim needs Neovim 0.10 or newer", vim.log.levels.ERROR)
    return
  end
  local previous = vim.deepcopy(config.get().daemon)
  local cfg = config.setup(opts)
  log.set_level(cfg.log.level)
  create_autocmds()
  if not vim.deep_equal(previous, cfg.daemon) then
    client.reset_backoff()
    rpc.shutdown()
  end
end

--- Generate a track. `cb(err, track)` runs exactly once: with the track when it is ready,
--- or with an error (the daemon's, GENERATION_CANCELLED, or DAEMON_EXITED if the daemon dies).
--- Without `cb`, errors are shown with `vim.notify`. Options are checked against the
--- `generate` section of the option schema (`lofi.config`): a bad one gives INVALID_OPTION.
---
--- Audio tasks (`task` = "retake", "repaint", "extend", "audio2audio", "edit"): `src` is a
--- cached track id or an audio file (`lofi.sources`); a cached track is looked up first
--- (`tracks.list`, NO_TRACK when it is not there) so that its parameters fill the options the
--- call does not set (`lofi.generate_params`).
---@param opts lofi.GenerateOpts|string options, or just the prompt
---@param cb? fun(err: lofi.Error?, track: lofi.Track?)
function M.generate(opts, cb)
  if cb ~= nil and type(cb) ~= "function" then
    error("lofi.generate: the callback must be a function, got " .. type(cb), 2)
  end
  local src = type(opts) == "table" and opts.src or nil
  -- Bad options are reported at once, before the daemon is asked for the source track.
  if type(src) ~= "string" or sources.classify(src) ~= "track" or not generations.params(opts) then
    generations.generate(opts, cb)
    return
  end
  sources.find_track(src, function(err, track)
    if not err then
      generations.generate(opts, cb, track)
    elseif cb then
      user.callback("generate()", cb, err, nil)
    else
      user.notify_error(err)
    end
  end)
end

--- Cancel a generation: `track_id`, or else the running one, else the oldest queued one.
--- The generation's own callback then gets GENERATION_CANCELLED; `cb(err, result)` reports
--- whether the daemon accepted the request.
---@param track_id? string
---@param cb? fun(err: lofi.Error?, result: table?)
function M.cancel(track_id, cb)
  generations.cancel(track_id, cb)
end

--- List the cached tracks, most recently used first.
---@param cb fun(err: lofi.Error?, tracks: lofi.Track[]?)
function M.tracks(cb)
  rpc.request("tracks.list", nil, function(err, result)
    cb(err, not err and result and require("lofi.remote").known(result.tracks) or nil)
  end)
end

--- Delete a cached track.
---@param track_id string
---@param cb? fun(err: lofi.Error?)
function M.delete_track(track_id, cb)
  rpc.request("tracks.delete", { track_id = track_id }, function(err)
    if cb then
      cb(err)
    elseif err then
      user.notify_error(err, vim.log.levels.WARN)
    end
  end)
end

--- Install a backend's models through the daemon: download (after asking, unless
--- `opts.yes`), export to ONNX, verify. Progress fires `LofiSetupProgress`; the end fires
--- `LofiSetupComplete` or `LofiSetupError` and calls `cb` once. A declined download calls
--- `cb` with a SETUP_FAILED error and installs nothing.
---@param opts? lofi.SetupOpts
---@param cb? fun(err: lofi.Error?, result: table?) result: `setup_complete`'s params
function M.install(opts, cb)
  install.start(opts, cb)
end

--- Cancel the setup in progress (its callback then gets GENERATION_CANCELLED).
---@param cb? fun(err: lofi.Error?, cancelled: boolean?)
function M.cancel_install(cb)
  install.cancel(cb)
end

--- True while a setup started by `install()` has not ended.
---@return boolean
function M.installing()
  return install.running()
end

--- The backends the daemon offers, with their status and execution providers (the answer is
--- kept for completion and the statusline, `lofi.backend`).
---@param cb fun(err: lofi.Error?, backends: lofi.Backend[]?)
function M.backends(cb)
  rpc.request("backends.list", nil, function(err, result)
    if not err then
      require("lofi.backend").remember(result)
    end
    cb(err, result)
  end)
end

---@param track lofi.Track
---@param opts? {loop?: boolean}
local function play_now(track, opts)
  -- a track of a daemon on another machine plays from its fetched copy (`lofi.remote`)
  require("lofi.remote").localize(track, function()
    local _, err = player.play(track, opts)
    redraw.statusline()
    if err then
      user.notify_error(err)
    end
  end)
end

--- Play a track: a track table, a file path, a track id or a cached track's prompt (the most
--- recently used track with it); without one, the last track made in this session, or else the
--- most recently used cached track.
---@param track? lofi.Track|string
---@param opts? {loop?: boolean}
function M.play(track, opts)
  local is_path = type(track) == "string" and (track:find("[/\\]") or vim.uv.fs_stat(track))
  if type(track) == "table" or is_path then
    play_now(track --[[@as lofi.Track]], opts)
    return
  end
  local last = generations.last_track()
  if track == nil and last then
    play_now(last, opts)
    return
  end
  M.tracks(function(err, tracks)
    if err then
      user.notify_error(err)
      return
    end
    for _, item in ipairs(tracks or {}) do
      if track == nil or item.track_id == track then
        play_now(item, opts)
        return
      end
    end
    for _, item in ipairs(tracks or {}) do
      if item.prompt == track then
        play_now(item, opts)
        return
      end
    end
    local missing = track and ("no track " .. track) or "no tracks yet"
    user.notify_error(errors.new(errors.client.NO_TRACK, missing), vim.log.levels.WARN)
  end)
end

--- Stop playback, and the radio station if one plays.
---@return boolean stopped whether something was playing
function M.stop()
  local radio_stopped = radio.stop()
  local stopped = player.stop()
  redraw.statusline()
  return stopped or radio_stopped
end

--- Pause playback: the radio station if one plays, else the player (SIGSTOP; not on Windows).
---@return boolean ok
---@return lofi.Error? err
function M.pause()
  if radio.active() then
    return radio.pause(), nil
  end
  local ok, err = player.pause()
  redraw.statusline()
  return ok, err
end

--- Resume paused playback (the radio station if one plays).
---@return boolean ok
---@return lofi.Error? err
function M.resume()
  if radio.active() then
    return radio.resume(), nil
  end
  local ok, err = player.resume()
  redraw.statusline()
  return ok, err
end

--- The radio: one endless station, generated while it plays (see `:help lofi-radio`).
--- Callbacks are optional; without one, errors are shown with `vim.notify`.
M.radio = {
  --- Start a station (stopping the one that plays): options or just the prompt.
  ---@type fun(opts?: lofi.RadioStartOpts|string, cb?: fun(err: lofi.Error?, result: table?))
  start = radio.start,
  --- Stop the station; returns whether one was playing.
  ---@type fun(cb?: fun(err: lofi.Error?, result: table?)): boolean
  stop = radio.stop,
  --- Skip to the next segment.
  ---@type fun(cb?: fun(err: lofi.Error?)): boolean
  skip = radio.skip,
  ---@type fun(cb?: fun(err: lofi.Error?)): boolean
  pause = radio.pause,
  ---@type fun(cb?: fun(err: lofi.Error?)): boolean
  resume = radio.resume,
  --- Keep the segment heard (or `index`, or `all` of them) against cache eviction.
  ---@type fun(opts?: {index?: integer, all?: boolean}, cb?: fun(err: lofi.Error?, result: table?))
  like = radio.like,
  --- Save the station so far as one file.
  ---@type fun(path?: string, cb?: fun(err: lofi.Error?, result: table?))
  save = radio.save,
  --- The daemon's view of the station (`{status = "idle"}` without one).
  ---@type fun(cb: fun(err: lofi.Error?, result: table?))
  status = radio.status,
  --- True while a station plays in this editor.
  ---@type fun(): boolean
  active = radio.active,
}

--- Subscribe to an event (see `:help lofi-events`); returns a function that unsubscribes.
---@param event lofi.EventName
---@param fn fun(data: table)
---@return fun() unsubscribe
function M.on(event, fn)
  return events.on(event, fn)
end

--- A short string for statuslines ("" when idle). See `lofi.status`.
---@return string
function M.status()
  return status.get()
end

--- The generations this editor is waiting for, the running one first.
---@return lofi.GenerationInfo[]
function M.active()
  return generations.active()
end

---@return lofi.Track? track the last track completed in this session
function M.last_track()
  return generations.last_track()
end

--- Stop the radio, the player and the daemon (bounded wait) and close the progress window. Runs on
--- `VimLeavePre`; the daemon starts again on next use.
---@param timeout_ms? integer default `daemon.shutdown_timeout_ms`
---@return boolean exited the daemon is gone
function M.shutdown(timeout_ms)
  -- Blocking (bounded): on VimLeavePre no timer would fire to SIGKILL a stubborn player.
  radio.shutdown()
  player.stop({ sync = true })
  local exited = rpc.shutdown_sync(timeout_ms)
  progress.close()
  return exited
end

-- Loading the API (on first use, never at startup) routes the daemon's notifications and arms
-- the VimLeavePre cleanup, before any request can start the daemon.
routing.attach()
create_autocmds()

return M
