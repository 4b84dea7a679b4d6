--- A station's playback: its player (mpv, gapless, or the sequential fallback), the playhead
--- reports to the daemon (`radio.position`), the station timer, and its end. `lofi.radio`
--- holds the station; this module acts on one it is given.
local client = require("lofi.client")
local config = require("lofi.config")
local errors = require("lofi.errors")
local events = require("lofi.events")
local log = require("lofi.log")
local mpv = require("lofi.mpv")
local player = require("lofi.player")
local radio_player = require("lofi.radio_player")
local redraw = require("lofi.redraw")
local rpc = require("lofi.rpc")
local stations = require("lofi.radio_station")
local user = require("lofi.user")

local uv = vim.uv

local M = {}

--- The station timer's period; it redraws the statusline (the buffer counts down).
M.TICK_MS = 1000
--- Ticks between playhead reports while playing (the daemon wants one every ~5 s).
M.REPORT_TICKS = 5

--- End a station here: `station.on_end` runs, its timer and player stop, `LofiRadioStop`
--- fires (for a station the daemon accepted). Does not tell the daemon. Safe to repeat.
---@param station lofi.RadioStation
---@param reason string
---@param message? string
---@param sync? boolean block until the player has ended (Neovim is exiting)
function M.end_station(station, reason, message, sync)
  if station.ended then
    return
  end
  station.ended = true
  if station.on_end then
    station.on_end()
  end
  if station.timer and not station.timer:is_closing() then
    station.timer:close()
  end
  if station.player then
    station.player:stop({ sync = sync })
  end
  log.info("radio station %s ended: %s", tostring(station.id), reason)
  if station.id then
    events.emit("radio_stop", { station_id = station.id, reason = reason, message = message })
  end
  redraw.statusline()
end

--- Ask the daemon to stop its station, if a daemon runs (never starts one for that).
---@param cb? fun(err: lofi.Error?, result: table?)
function M.stop_on_daemon(cb)
  if not client.current() then
    if cb then
      vim.schedule(function()
        cb(nil, { status = "idle" })
      end)
    end
    return
  end
  rpc.request("radio.stop", {}, function(err, result)
    if cb then
      cb(err, result)
    elseif err then
      log.warn("radio.stop: %s", tostring(err))
    end
  end)
end

--- Tell the daemon where the playhead is (the player's playlist position and time-pos).
---@param station lofi.RadioStation
function M.report(station)
  local handle = station.player
  if not station.id or station.ended or not handle then
    return
  end
  handle:get("time-pos", function(_, time_pos)
    if station.ended then
      return
    end
    local index, position = stations.playhead(station, handle.props["playlist-pos"], time_pos)
    if index == nil then
      return
    end
    station.playing_index, station.position_sec = index, position
    if not client.current() then
      return
    end
    local params = {
      station_id = station.id,
      index = index,
      position_sec = position,
      paused = station.paused,
    }
    rpc.request("radio.position", params, function(err, result)
      if station.ended then
        return
      end
      if err and err.code == errors.daemon.RADIO_NOT_ACTIVE then
        M.end_station(station, "daemon", err.message)
      elseif err then
        log.warn("radio.position: %s", tostring(err))
      elseif type(result) == "table" then
        stations.set_buffer(station, result.buffer_ahead_sec, uv.now())
        redraw.statusline()
      end
    end)
  end)
end

---@param station lofi.RadioStation
---@param name string
---@param value any
local function on_property(station, name, value)
  if station.ended then
    return
  end
  if name == "playlist-pos" and type(value) == "number" and value >= 0 then
    station.started = true
    station.idle = false
    local index = station.entries[value + 1]
    local segment = index and station.segments[index]
    if segment then
      events.emit("radio_segment", stations.segment_event(station, segment, "playing", uv.now()))
    end
    M.report(station)
  elseif name == "pause" and type(value) == "boolean" then
    station.paused = value
    M.report(station)
  elseif name == "idle-active" and type(value) == "boolean" then
    station.idle = value and station.started
    if station.idle then
      M.report(station)
    end
  end
  redraw.statusline()
end

--- Start the station's player: mpv when it can (gapless), else the sequential fallback.
---@param station lofi.RadioStation
---@return lofi.Error? err
function M.start_player(station)
  local cfg = config.get()
  ---@type lofi.MpvOpts
  local opts = {
    extra_args = cfg.radio.mpv_args,
    on_ready = function(err)
      if station.ended then
        return
      elseif err then
        M.end_station(station, "player", err)
        M.stop_on_daemon()
        user.notify("radio stopped: " .. err, vim.log.levels.WARN)
      elseif cfg.radio.volume and station.player then
        station.player:set_volume(cfg.radio.volume)
      end
    end,
    on_property = function(name, value)
      on_property(station, name, value)
    end,
    on_exit = function()
      if not station.ended then
        M.end_station(station, "player", "the player ended")
        M.stop_on_daemon()
        user.notify("radio stopped: the player ended", vim.log.levels.WARN)
      end
    end,
  }
  if cfg.player.cmd == nil and vim.fn.executable("mpv") == 1 then
    local handle, err = mpv.start(opts)
    if not handle then
      return errors.new(errors.client.PLAYER_NOT_FOUND, err --[[@as string]])
    end
    station.player, station.gapless = handle, true
    return nil
  end
  local exe = cfg.player.cmd and cfg.player.cmd[1] or (player.detect() or {}).name
  if not exe or vim.fn.executable(exe) ~= 1 then
    local what = exe and string.format("%q is not an executable", exe) or "no audio player found"
    return errors.new(errors.client.PLAYER_NOT_FOUND, "the radio needs a player: " .. what)
  end
  station.player = radio_player.start(opts)
  return nil
end

--- Start the station's timer: a statusline redraw every tick, a playhead report every
--- `M.REPORT_TICKS` while playing. `M.end_station` closes it.
---@param station lofi.RadioStation
function M.start_timer(station)
  local timer = assert(uv.new_timer())
  station.timer = timer
  timer:start(
    M.TICK_MS,
    M.TICK_MS,
    vim.schedule_wrap(function()
      if station.ended then
        return
      end
      station.ticks = station.ticks + 1
      redraw.statusline()
      if station.ticks % M.REPORT_TICKS == 0 and station.started and not station.paused then
        M.report(station)
      end
    end)
  )
end

return M
