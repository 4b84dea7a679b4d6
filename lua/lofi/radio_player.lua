--- The station player for players other than mpv (`player.cmd` set, or mpv not installed):
--- the segment files are played one after another through `lofi.player`, one process per file.
--- Each file starts when the previous one's process has ended, so there is a short gap at every
--- join (the player's start-up time); mpv (`lofi.mpv`) plays them gaplessly.
---
--- It offers the part of `lofi.Mpv`'s interface the station uses (`append`, `next`,
--- `set_pause`, `set_volume`, `get`, `stop`, `props` with "playlist-pos", "pause" and
--- "idle-active"), so `lofi.radio` drives both the same way. The end of a file is noticed by a
--- libuv timer that watches `lofi.player.current()`.
local errors = require("lofi.errors")
local log = require("lofi.log")
local player = require("lofi.player")

local uv = vim.uv

local M = {}

--- How often the timer looks whether the file has ended.
M.POLL_MS = 100

---@class lofi.RadioSequential
---@field pid? integer the process playing the current file
---@field connected boolean always true (nothing to connect to)
---@field stopped boolean
---@field props table<string, any> "playlist-pos", "pause", "idle-active" as mpv reports them
---@field package paths string[] the playlist
---@field package started_ms? integer when the current file started
---@field package paused_ms number time spent paused in the current file
---@field package paused_since? integer
---@field package timer uv.uv_timer_t
---@field package opts lofi.MpvOpts
local Sequential = {}
Sequential.__index = Sequential

---@param self lofi.RadioSequential
---@param name string
---@param value any
local function set_prop(self, name, value)
  if self.props[name] == value then
    return
  end
  self.props[name] = value
  if self.opts.on_property and not self.stopped then
    self.opts.on_property(name, value)
  end
end

--- Play entry `pos` (0-based); a file that cannot be played is skipped.
---@param self lofi.RadioSequential
---@param pos integer
local function play(self, pos)
  while pos < #self.paths do
    local pid, err = player.play(self.paths[pos + 1], { loop = false })
    if pid then
      self.pid = pid
      self.started_ms = uv.now()
      self.paused_ms = 0
      self.paused_since = nil
      set_prop(self, "pause", false)
      set_prop(self, "idle-active", false)
      set_prop(self, "playlist-pos", pos)
      return
    end
    log.warn("radio: cannot play %s: %s", self.paths[pos + 1], tostring(err))
    pos = pos + 1
  end
  self.pid = nil
  set_prop(self, "playlist-pos", -1)
  set_prop(self, "idle-active", true)
end

---@param self lofi.RadioSequential
local function poll(self)
  if self.stopped or not self.pid then
    return
  end
  local now = player.current()
  if now and now.pid == self.pid then
    return
  end
  if now then
    -- Something else plays now (`:Lofi play`): the station gives the player up.
    log.info("radio: the player now plays something else; the station's playback ends")
    self:stop()
    if self.opts.on_exit then
      self.opts.on_exit(self --[[@as any]])
    end
    return
  end
  play(self, self.props["playlist-pos"] + 1)
end

--- Start the sequential player. `opts.on_ready` runs (scheduled) with nil.
---@param opts lofi.MpvOpts
---@return lofi.RadioSequential
function M.start(opts)
  local timer = assert(uv.new_timer())
  local self = setmetatable({
    connected = true,
    stopped = false,
    props = { ["playlist-pos"] = -1, pause = false, ["idle-active"] = true },
    paths = {},
    paused_ms = 0,
    timer = timer,
    opts = opts,
  }, Sequential)
  timer:start(
    M.POLL_MS,
    M.POLL_MS,
    vim.schedule_wrap(function()
      poll(self)
    end)
  )
  vim.schedule(function()
    if opts.on_ready and not self.stopped then
      opts.on_ready(nil)
    end
  end)
  return self
end

--- Append a file; it plays at once when nothing plays.
---@param path string
---@param cb? fun(err: string?)
function Sequential:append(path, cb)
  table.insert(self.paths, path)
  if not self.stopped and not self.pid then
    play(self, #self.paths - 1)
  end
  if cb then
    vim.schedule(function()
      cb(nil)
    end)
  end
end

---@param cb? fun(err: string?)
function Sequential:next(cb)
  local pos = self.props["playlist-pos"]
  local err = nil
  if self.stopped or pos < 0 or pos + 1 >= #self.paths then
    err = "no next entry"
  else
    play(self, pos + 1)
  end
  if cb then
    vim.schedule(function()
      cb(err)
    end)
  end
end

---@param paused boolean
---@param cb? fun(err: string?)
function Sequential:set_pause(paused, cb)
  local ok, err = true, nil
  if self.pid and paused ~= self.props.pause then
    ---@type boolean, lofi.Error?
    ok, err = (paused and player.pause or player.resume)()
    if ok and paused then
      self.paused_since = uv.now()
    elseif ok and self.paused_since then
      self.paused_ms = self.paused_ms + (uv.now() - self.paused_since)
      self.paused_since = nil
    end
  end
  if ok then
    set_prop(self, "pause", paused)
  end
  if cb then
    vim.schedule(function()
      cb(err and err.message or nil)
    end)
  end
end

--- Volume is mpv's alone: other players keep their own.
---@param _ number
---@param cb? fun(err: string?)
function Sequential:set_volume(_, cb)
  if cb then
    vim.schedule(function()
      cb(errors.new(errors.client.NOT_SUPPORTED, "volume needs mpv").message)
    end)
  end
end

--- "playlist-pos", "pause", "idle-active" or "time-pos" (seconds since the file started,
--- less the time paused).
---@param name string
---@param cb fun(err: string?, value: any)
function Sequential:get(name, cb)
  local value, err = self.props[name], nil
  if name == "time-pos" then
    if self.pid and self.started_ms then
      local paused = self.paused_ms + (self.paused_since and (uv.now() - self.paused_since) or 0)
      value = math.max(0, uv.now() - self.started_ms - paused) / 1000
    else
      err = "property unavailable"
    end
  elseif value == nil then
    err = "property unavailable"
  end
  vim.schedule(function()
    cb(err, value)
  end)
end

---@return boolean
function Sequential:is_alive()
  return not self.stopped
end

--- Stop: the timer, and the current file's player if it is still this station's.
---@param opts? {sync?: boolean}
function Sequential:stop(opts)
  if self.stopped then
    return
  end
  self.stopped = true
  if not self.timer:is_closing() then
    self.timer:close()
  end
  local now = player.current()
  if self.pid and now and now.pid == self.pid then
    player.stop(opts)
  end
  self.pid = nil
end

return M
