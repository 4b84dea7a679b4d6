-- The radio end to end: the real daemon with the tiny models makes the segments, a real mpv
-- (--ao=null: real-time playback without a sound device) plays them over its IPC socket.
local t = require("lofi_test")

local uv = vim.uv

local SEGMENT = 5

--- mpv's reply to get_property, waited for; nil while unavailable.
---@param mpv lofi.Mpv
---@param name string
local function get(mpv, name)
  local done, value = false, nil
  mpv:get(name, function(_, v)
    done, value = true, v
  end)
  t.wait(2000, function()
    return done
  end, "get_property " .. name)
  return value
end

--- One look at the player: the seconds of the station played (whole entries before the current
--- one plus time-pos, negative while mpv's buffer still plays the previous entry), the seconds
--- queued ahead of that, and the wall clock. Nil while mpv moves between entries.
---@param station lofi.RadioStation
---@return {played: number, ahead: number, ms: number, pos: integer, time_pos: number}?
local function look(station)
  local mpv = station.player --[[@as lofi.Mpv]]
  local pos = get(mpv, "playlist-pos")
  local ms = uv.hrtime() / 1e6
  local time_pos = get(mpv, "time-pos")
  if type(pos) ~= "number" or pos < 0 or type(time_pos) ~= "number" then
    return nil
  end
  if get(mpv, "playlist-pos") ~= pos then
    return nil
  end
  local before, total = 0, 0
  for i, index in ipairs(station.entries) do
    local duration = station.segments[index].duration_sec
    if i <= pos then
      before = before + duration
    end
    total = total + duration
  end
  local played = before + time_pos
  return { played = played, ahead = total - played, ms = ms, pos = pos, time_pos = time_pos }
end

local function request(method, params)
  local err, result = require("lofi.rpc").request_sync(method, params, 10000)
  assert(err == nil, tostring(err))
  return result
end

t.describe("radio (daemon + mpv)", function()
  t.it("plays an endless station gaplessly, keeps the buffer and stops cleanly", function()
    if vim.fn.executable("mpv") ~= 1 then
      error("mpv is not installed (.ci/run installs it; apt install mpv)")
    end
    local lofi = require("lofi")
    -- --keep-loaded: the sessions stay loaded between segments, as a station wants them.
    lofi.setup(t.config({
      daemon = { args = { "--keep-loaded" } },
      radio = { mpv_args = { "--ao=null" } },
    }))
    -- A library track, for the fills of a station that generates slower than real time.
    local library = nil
    lofi.generate(
      { prompt = "library piano", duration = 5, steps = 1, seed = 1, play = false },
      function(err, track)
        library = err or track
      end
    )
    t.wait(60000, function()
      return library ~= nil
    end, "the library track")
    t.ok(library.path, "the library track: " .. tostring(library.message))
    local messages = t.capture_notify()
    local starved_ms = {}
    lofi.on("radio_starved", function()
      table.insert(starved_ms, uv.hrtime() / 1e6)
    end)
    local seen = t.record_user_events({
      "LofiRadioStart",
      "LofiRadioSegment",
      "LofiRadioStop",
      "LofiRadioStarved",
    })
    local started, start_err = nil, nil
    lofi.radio.start({
      prompt = "rainy jazzhop",
      seed = 11,
      segment = SEGMENT,
      context = SEGMENT,
      crossfade = 0.5,
      steps = 4,
    }, function(err, result)
      started, start_err = result, err
    end)
    t.wait(30000, function()
      return started or start_err
    end, "radio.start's answer")
    assert(start_err == nil, tostring(start_err))
    t.eq(seen[1].pattern, "LofiRadioStart")
    t.eq(seen[1].data.gapless, true)
    local station = assert(require("lofi.radio").current())
    local pid = station.player.pid

    -- Sample the player until the fourth segment is heard.
    local looks = {}
    t.wait(40000, function()
      local sample = look(station)
      if sample then
        table.insert(looks, sample)
      end
      t.sleep(150)
      return sample ~= nil and sample.pos >= 3 and sample.time_pos > 0.5
    end, "the fourth segment to play")
    t.ok(#station.entries >= 4, "four segments queued")

    -- No gap: from the first look on, what was played keeps pace with the wall clock.
    local first = looks[1]
    local worst, lowest, built_ms = 0, math.huge, nil
    for _, sample in ipairs(looks) do
      local wall = (sample.ms - first.ms) / 1000
      worst = math.max(worst, math.abs(wall - (sample.played - first.played)))
      if not built_ms and sample.ahead >= 2 * SEGMENT then
        built_ms = sample.ms
      end
      if built_ms then
        lowest = math.min(lowest, sample.ahead)
      end
    end
    t.ok(worst < 1.0, string.format("played time drifted %.2f s from the wall clock", worst))

    local status = request("radio.status", {})
    t.eq(status.status, "playing")
    t.eq(status.station_id, started.station_id)
    local kinds, starved = {}, nil
    for _, ev in ipairs(seen) do
      if ev.pattern == "LofiRadioSegment" and ev.data.state == "queued" then
        kinds[#kinds + 1] = ev.data.kind
        t.eq(ev.data.station_id, started.station_id)
        t.ok(uv.fs_stat(ev.data.path), "the segment file exists")
      elseif ev.pattern == "LofiRadioStarved" then
        starved = starved or ev.data
      end
    end
    t.eq(kinds[1], "generated")
    if starved then
      -- Slower than real time for a while (a busy machine, or the first segments): the gap
      -- was filled from the library, and said so once.
      t.eq(starved.fill_track_id ~= nil, true, "a library track filled the gap")
      t.ok(vim.list_contains(kinds, "library"), "a library segment was queued")
      t.contains(t.joined(messages), "slower than real time")
    end
    local starved_late = built_ms and starved_ms[#starved_ms] and starved_ms[#starved_ms] > built_ms
    io.stdout:write(
      string.format(
        "      radio: %.2fx real time, lowest buffer %s s, drift %.2f s, %d starvation(s)\n",
        status.rtf or 0,
        built_ms and string.format("%.2f", lowest) or "-",
        worst,
        #starved_ms
      )
    )
    if (status.rtf or 0) >= 1.5 then
      t.ok(
        built_ms ~= nil,
        string.format("two segments were never buffered at %.2fx real time", status.rtf)
      )
    end
    if built_ms and not starved_late and (status.rtf or 0) >= 1.0 then
      -- Generation keeps up: once two segments are ready ahead, at least one always is (the
      -- station generates whenever it has less than `ahead + 1` segments).
      t.ok(
        lowest >= SEGMENT - 0.25,
        string.format("the buffer fell to %.2f s at %.2fx real time", lowest, status.rtf)
      )
    end
    t.contains(lofi.status(), "📻 ")

    -- Stop: no player, no daemon work left.
    local stopped = nil
    lofi.radio.stop(function(err, result)
      stopped = err or result
    end)
    t.wait(10000, function()
      return stopped ~= nil
    end, "radio.stop's answer")
    t.eq(stopped.status, "stopped")
    t.eq(seen[#seen].pattern, "LofiRadioStop")
    t.eq(seen[#seen].data.reason, "stopped")
    t.wait(3000, function()
      return not t.alive(pid)
    end, "mpv to end")
    t.wait(2000, function()
      return uv.fs_stat(station.player.dir) == nil
    end, "the socket folder to go")
    t.eq(request("radio.status", {}).status, "idle")
    t.wait(10000, function()
      local jobs = request("status", {})
      return jobs.running == nil and #jobs.queue == 0
    end, "no daemon job running or queued")
    t.eq(lofi.status(), "")
  end)
end)
