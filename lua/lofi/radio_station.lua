--- One station as the editor sees it: its segments, the player's playlist (which entry holds
--- which segment), and what follows from the player's state: the segment and position that are
--- heard, the buffer ahead, the data of the `LofiRadio*` events. No I/O here; `lofi.radio`
--- drives it.
local M = {}

---@class lofi.RadioSegment
---@field station_id string
---@field index integer the segment's place in the station (0 first)
---@field kind "generated"|"library"
---@field track_id? string
---@field path string
---@field duration_sec number
---@field start_sec? number where it starts in the station's timeline
---@field prompt? string

---@class lofi.RadioStation
---@field id? string nil until the daemon answered `radio.start`
---@field prompt string
---@field seed? integer
---@field config? table the daemon's station configuration
---@field segments table<integer, lofi.RadioSegment> by index
---@field entries integer[] the player's playlist, in order: segment indexes
---@field player? lofi.Mpv|lofi.RadioSequential
---@field gapless boolean the player is mpv
---@field paused boolean
---@field started boolean playback has begun
---@field idle boolean the player has played everything it has
---@field playing_index? integer the segment heard at the last look
---@field position_sec? number the position in it at the last look
---@field buffer_sec? number seconds ahead of the playhead, as last reported
---@field buffer_ms? integer `uv.now()` of that report
---@field starved boolean in a starvation episode (until the next generated segment)
---@field warned boolean the "slower than real time" message was shown
---@field ended boolean
---@field timer? uv.uv_timer_t
---@field ticks integer
---@field on_end? fun() runs when the station ends (`lofi.radio` forgets it)

---@param prompt string
---@return lofi.RadioStation
function M.new(prompt)
  return {
    prompt = prompt,
    segments = {},
    entries = {},
    gapless = false,
    paused = false,
    started = false,
    idle = false,
    starved = false,
    warned = false,
    ended = false,
    ticks = 0,
  }
end

--- The segment heard and the position in it, from the player's playlist position and
--- time-pos. With gapless playback mpv moves to the next entry while the end of the previous
--- one is still in its audio buffer (time-pos is negative then): that previous segment is the
--- one heard. Past the end of the playlist (idle), the last segment at its end.
---@param station lofi.RadioStation
---@param pos? integer the player's playlist-pos (0-based; -1 or nil: none)
---@param time_pos? number
---@return integer? index nil before anything played
---@return number position_sec
function M.playhead(station, pos, time_pos)
  local entries = station.entries
  if pos == nil or pos < 0 or pos >= #entries then
    if station.started and #entries > 0 then
      local last = station.segments[entries[#entries]]
      return last.index, last.duration_sec
    end
    return nil, 0
  end
  local entry = pos + 1
  local seconds = tonumber(time_pos) or 0
  if seconds < 0 and entry > 1 then
    entry = entry - 1
    seconds = station.segments[entries[entry]].duration_sec + seconds
  end
  local segment = station.segments[entries[entry]]
  seconds = math.min(math.max(seconds, 0), segment.duration_sec)
  return segment.index, seconds
end

--- Seconds of audio ahead of the playhead now: the last report, less the time played since.
---@param station lofi.RadioStation
---@param now_ms integer `uv.now()`
---@return number? seconds nil before the daemon reported any
function M.buffer_ahead(station, now_ms)
  if station.buffer_sec == nil then
    return nil
  end
  local moving = station.started and not station.paused and not station.idle
  local elapsed = moving and (now_ms - (station.buffer_ms or now_ms)) / 1000 or 0
  return math.max(0, station.buffer_sec - elapsed)
end

--- Remember a buffer report from the daemon.
---@param station lofi.RadioStation
---@param seconds any
---@param now_ms integer
function M.set_buffer(station, seconds, now_ms)
  if type(seconds) == "number" and seconds == seconds then
    station.buffer_sec, station.buffer_ms = seconds, now_ms
  end
end

--- The data of `LofiRadioSegment`.
---@param station lofi.RadioStation
---@param segment lofi.RadioSegment
---@param state "queued"|"playing"
---@param now_ms integer
---@return table
function M.segment_event(station, segment, state, now_ms)
  return {
    station_id = station.id,
    index = segment.index,
    kind = segment.kind,
    path = segment.path,
    duration_sec = segment.duration_sec,
    prompt = segment.prompt,
    track_id = segment.track_id,
    state = state,
    buffer_ahead_sec = M.buffer_ahead(station, now_ms),
  }
end

--- What the statusline shows (`lofi.status`).
---@param station lofi.RadioStation
---@param now_ms integer
---@return {prompt: string, paused: boolean, buffer_ahead_sec?: number, starved: boolean}
function M.info(station, now_ms)
  local playing = station.segments[station.playing_index or -1]
  return {
    prompt = playing and playing.kind == "generated" and playing.prompt or station.prompt,
    paused = station.paused,
    buffer_ahead_sec = M.buffer_ahead(station, now_ms),
    starved = station.starved,
  }
end

return M
