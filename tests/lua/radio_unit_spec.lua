-- The radio in the editor without the daemon: command parsing and completion, options, and a
-- station driven by simulated `radio_*` notifications (through the routing layer) with a real
-- mpv (--ao=null) or the sequential fallback (a fake player).
local t = require("lofi_test")
local wav = dofile(t.root .. "/tests/lua/wav.lua")

local FAKE = t.root .. "/tests/lua/fake_player.sh"
local STATION = "st-test"

--- Replace the daemon: `rpc.request` answers from `answers` (a value, or a function of the
--- params returning err, result), and a daemon counts as running. Returns the requests sent.
---@param answers table<string, any>
---@return {method: string, params: table}[]
local function fake_daemon(answers)
  local rpc = require("lofi.rpc")
  local sent = {}
  rpc.request = function(method, params, cb)
    table.insert(sent, { method = method, params = params })
    local answer = answers[method]
    vim.schedule(function()
      if type(answer) == "function" then
        cb(answer(params))
      elseif answer == nil then
        cb(require("lofi.errors").new(-32601, "no fake answer for " .. method), nil)
      else
        cb(nil, answer)
      end
    end)
    return #sent
  end
  require("lofi.client").current = function()
    return { pid = 1 }
  end
  return sent
end

local function default_answers()
  return {
    ["radio.start"] = { station_id = STATION, seed = 7, config = { segment_sec = 5 } },
    ["radio.position"] = { buffer_ahead_sec = 12.0 },
    ["radio.stop"] = { status = "stopped", station_id = STATION, segments = 2 },
    ["radio.like"] = function(params)
      return nil, { pinned = params.all and { "a", "b" } or { "a" } }
    end,
  }
end

---@param method string
---@param sent {method: string, params: table}[]
local function requests(sent, method)
  return vim.tbl_filter(function(item)
    return item.method == method
  end, sent)
end

--- Start a station and wait for the answer.
local function start_station(opts)
  local done, err = false, nil
  require("lofi").radio.start(opts or { prompt = "rainy jazzhop" }, function(e)
    done, err = true, e
  end)
  t.wait(3000, function()
    return done
  end, "radio.start's callback")
  assert(err == nil, tostring(err))
end

--- A `radio_segment` notification, routed as the daemon's would be.
local function segment(index, path, duration, extra)
  require("lofi.routing").route(
    "radio_segment",
    vim.tbl_extend("force", {
      station_id = STATION,
      index = index,
      kind = "generated",
      track_id = "track" .. index,
      path = path,
      duration_sec = duration,
      start_sec = index * duration,
      prompt = "rainy jazzhop",
      buffer_ahead_sec = 9.0,
    }, extra or {})
  )
end

local function mpv_config()
  return {
    notify = false,
    player = { autoplay = false },
    radio = { mpv_args = { "--ao=null" } },
    log = { level = "debug" },
  }
end

t.describe("radio arguments", function()
  local parse = function(args)
    return require("lofi.radio_args").parse(args)
  end

  t.it("reads a prompt and key=value options", function()
    t.eq(parse({ "rainy", "jazzhop", "segment=20", "crossfade=0.5", "variation=0" }), {
      action = "start",
      opts = { prompt = "rainy jazzhop", segment = 20, crossfade = 0.5, variation = 0 },
    })
    t.eq(parse({}), { action = "start", opts = {} })
    t.eq(parse({ "--", "stop", "motion", "a=b" }), {
      action = "start",
      opts = { prompt = "stop motion a=b" },
    })
  end)

  t.it("reads the actions", function()
    for _, action in ipairs({ "stop", "skip", "pause", "resume", "status" }) do
      t.eq(parse({ action }), { action = action })
    end
    t.eq(parse({ "like" }), { action = "like", all = false })
    t.eq(parse({ "like", "all" }), { action = "like", all = true })
    t.eq(parse({ "save" }), { action = "save" })
    t.eq(parse({ "save", "~/x.flac" }), { action = "save", path = "~/x.flac" })
  end)

  t.it("names what is wrong", function()
    local function err(args)
      local cmd, message = parse(args)
      t.eq(cmd, nil)
      return message
    end
    t.contains(err({ "lofi", "tempo=80" }), "unknown key `tempo`")
    t.contains(err({ "segment=abc" }), "`segment` must be a number")
    t.contains(err({ "segment=" }), "`segment=` needs a value")
    t.contains(err({ "variation=1.5" }), "`variation` must be a whole number")
    t.contains(err({ "segment=inf" }), "must be a number")
    t.contains(err({ "stop", "motion" }), "takes no arguments")
    t.contains(err({ "like", "this" }), "takes `all` or nothing")
    t.contains(err({ "save", "a", "b" }), "takes one argument")
  end)

  t.it("completes actions, keys and like's argument", function()
    local complete = require("lofi.commands").complete
    local keys = { "ahead=", "context=", "crossfade=", "seed=", "segment=", "steps=", "variation=" }
    local actions = { "like", "pause", "resume", "save", "skip", "status", "stop" }
    t.eq(complete("", "Lofi radio "), vim.list_extend(actions, keys))
    t.eq(complete("seg", "Lofi radio seg"), { "segment=" })
    t.eq(complete("", "Lofi radio rainy "), keys)
    t.eq(complete("", "Lofi radio like "), { "all" })
    t.eq(complete("", "Lofi radio stop "), {})
    t.ok(vim.list_contains(complete("ra", "Lofi ra"), "radio"), ":Lofi completes radio")
  end)
end)

t.describe(":Lofi radio status", function()
  t.it("words the daemon's status", function()
    local describe = require("lofi.radio_commands").describe
    t.eq(describe({ status = "idle" }), "radio: no station is playing")
    local text = describe({
      status = "playing",
      station_id = "abc",
      prompt = "rainy jazzhop",
      config = { segment_sec = 30, context_sec = 30, crossfade_sec = 1.5, variation = 4, seed = 9 },
      segments = 5,
      playing_index = 2,
      buffer_ahead_sec = 44.6,
      generating = true,
      starved = false,
      rtf = 1.5,
    })
    t.eq(
      text,
      "📻 rainy jazzhop\n  segment 3 of 5, 45 s ahead, generating, 1.50x real time\n"
        .. "  segment=30 context=30 crossfade=1.5 variation=4 seed=9 (station abc)"
    )
  end)
end)

t.describe("radio options", function()
  t.it("takes defaults from the radio and generate sections", function()
    require("lofi").setup({ radio = { segment = 10, crossfade = 1 }, generate = { steps = 4 } })
    local params = assert(require("lofi.radio_params").build({ prompt = "x", seed = 3 }))
    t.eq(params.prompt, "x")
    t.eq(params.seed, 3)
    t.eq(params.segment_sec, 10)
    t.eq(params.context_sec, 10, "the context default is cut to the segment")
    t.eq(params.crossfade_sec, 1)
    t.eq(params.variation, 4)
    t.eq(params.infer_steps, 4)
    local defaults = assert(require("lofi.radio_params").build({}))
    t.eq(defaults.prompt, require("lofi.config").get().radio.prompt)
  end)

  t.it("rejects unknown and mistyped options", function()
    local build = require("lofi.radio_params").build
    local _, err = build({ tempo = 80 })
    t.contains(err.message, "unknown radio option `tempo`")
    t.eq(err.name, "INVALID_OPTION")
    _, err = build({ segment = "long" })
    t.contains(err.message, "`segment` must be a number")
    _, err = build({ scheduler = "fast" })
    t.contains(err.message, "`scheduler` must be one of")
  end)

  t.it("checks the radio section in setup()", function()
    local lofi = require("lofi")
    t.raises(function()
      lofi.setup({ radio = { segment = 2 } })
    end, "`radio.segment` must be between 5 and 120, got 2")
    t.raises(function()
      lofi.setup({ radio = { volume = 150 } })
    end, "`radio.volume` must be between 0 and 100")
    t.raises(function()
      lofi.setup({ radio = { mpv_args = "--ao=null" } })
    end, "`radio.mpv_args` must be a list of strings")
    t.raises(function()
      lofi.setup({ radio = { prompt = "  " } })
    end, "`radio.prompt` must not be empty")
    t.raises(function()
      lofi.setup({ radio = { speed = 1 } })
    end, "unknown option `radio.speed`")
    lofi.setup({ radio = { segment = 5, context = 5, crossfade = 0.5, volume = 40 } })
    t.eq(require("lofi.config").get().radio.volume, 40)
  end)
end)

t.describe("radio station (simulated daemon)", function()
  t.it("plays segments gaplessly in mpv, reports the playhead and fires the events", function()
    local lofi = require("lofi")
    lofi.setup(mpv_config())
    require("lofi.radio_playback").TICK_MS = 200
    local sent = fake_daemon(default_answers())
    local seen = t.record_user_events({
      "LofiRadioStart",
      "LofiRadioSegment",
      "LofiRadioStop",
      "LofiRadioStarved",
    })
    local messages = t.capture_notify()
    start_station()
    t.eq(seen[1].pattern, "LofiRadioStart")
    t.eq(seen[1].data.station_id, STATION)
    t.eq(seen[1].data.gapless, true)
    t.eq(requests(sent, "radio.start")[1].params.prompt, "rainy jazzhop")
    t.eq(lofi.status(), "📻 rainy jazzhop …")
    local station = require("lofi.radio").current()
    local dir = t.tmpdir()
    segment(0, wav.write(dir .. "/0.wav", 1.0), 1.0)
    segment(1, wav.write(dir .. "/1.wav", 1.0), 1.0)
    local queued = vim.tbl_filter(function(ev)
      return ev.pattern == "LofiRadioSegment" and ev.data.state == "queued"
    end, seen)
    t.eq(#queued, 2)
    t.eq(queued[1].data.index, 0)
    t.eq(queued[1].data.kind, "generated")
    t.eq(queued[1].data.duration_sec, 1.0)
    t.eq(queued[1].data.prompt, "rainy jazzhop")
    t.eq(queued[2].data.buffer_ahead_sec, 9.0)
    t.wait(5000, function()
      return #vim.tbl_filter(function(item)
        return item.params.index == 1
      end, requests(sent, "radio.position")) > 0
    end, "a playhead report for segment 1")
    local report = requests(sent, "radio.position")[1].params
    t.eq(report.station_id, STATION)
    t.eq(report.index, 0)
    t.eq(report.paused, false)
    t.ok(report.position_sec >= 0 and report.position_sec <= 1.0)
    local playing = vim.tbl_filter(function(ev)
      return ev.pattern == "LofiRadioSegment" and ev.data.state == "playing"
    end, seen)
    t.eq(playing[1].data.index, 0)
    t.eq(playing[2].data.index, 1)
    t.wait(3000, function()
      return lofi.status():match("^📻 rainy jazzhop %+1[12]s$") ~= nil
    end, "the statusline with the buffer the daemon reported: " .. lofi.status())

    -- Starved twice: one message per station, one event per episode.
    for _ = 1, 2 do
      require("lofi.routing").route("radio_starved", {
        station_id = STATION,
        buffer_ahead_sec = 1.0,
        rtf = 0.5,
        fill_track_id = "lib1",
        message = "slow",
      })
    end
    local starved = vim.tbl_filter(function(ev)
      return ev.pattern == "LofiRadioStarved"
    end, seen)
    t.eq(#starved, 2)
    t.eq(starved[1].data.rtf, 0.5)
    t.eq(starved[1].data.fill_track_id, "lib1")
    local warnings = vim.tbl_filter(function(m)
      return m.level == vim.log.levels.WARN
    end, messages)
    t.eq(#warnings, 1, "one message per station: " .. t.joined(messages))
    t.contains(warnings[1].msg, "slower than real time")
    t.contains(warnings[1].msg, "track library")

    -- Notifications for another station change nothing.
    segment(2, dir .. "/none.wav", 1.0, { station_id = "other" })
    t.eq(#station.entries, 2)

    local pid = station.player.pid
    require("lofi.routing").route(
      "radio_stopped",
      { station_id = STATION, reason = "failed", message = "boom" }
    )
    local stop = seen[#seen]
    t.eq(stop.pattern, "LofiRadioStop")
    t.eq(stop.data, { station_id = STATION, reason = "failed", message = "boom" })
    t.eq(lofi.status(), "")
    t.eq(require("lofi").radio.active(), false)
    t.wait(3000, function()
      return not t.alive(pid)
    end, "mpv to end")
    t.contains(t.joined(messages), "radio stopped: boom")
  end)

  t.it("skips, pauses and resumes through mpv within 1 s", function()
    local lofi = require("lofi")
    lofi.setup(mpv_config())
    local sent = fake_daemon(default_answers())
    start_station()
    local station = require("lofi.radio").current()
    local dir = t.tmpdir()
    segment(0, wav.write(dir .. "/0.wav", 6.0), 6.0)
    segment(1, wav.write(dir .. "/1.wav", 6.0), 6.0)
    t.wait(5000, function()
      return station.started
    end, "playback")
    local function timed(what, fn, cond)
      local began = vim.uv.hrtime()
      fn()
      t.wait(1000, cond, what .. " within 1 s")
      return (vim.uv.hrtime() - began) / 1e6
    end
    timed("pause", lofi.radio.pause, function()
      return station.paused
    end)
    t.wait(1000, function()
      local last = requests(sent, "radio.position")
      return #last > 0 and last[#last].params.paused == true
    end, "the pause reported to the daemon")
    t.contains(lofi.status(), "📻 ⏸ rainy jazzhop")
    timed("resume", lofi.resume, function()
      return not station.paused
    end)
    timed("skip", lofi.radio.skip, function()
      return station.player.props["playlist-pos"] == 1
    end)
    local skip_err = nil
    lofi.radio.skip(function(err)
      skip_err = err or false
    end)
    t.wait(1000, function()
      return skip_err ~= nil
    end, "skip past the last segment")
    t.contains(skip_err.message, "no next segment yet")
    local pid = station.player.pid
    t.ok(lofi.stop(), "lofi.stop() stops the radio")
    t.wait(3000, function()
      return not t.alive(pid)
    end, "mpv to end")
    t.eq(#requests(sent, "radio.stop"), 1, "the daemon's station was stopped")
  end)

  t.it("ends with the daemon: LofiRadioStop with reason daemon", function()
    local rpc = require("lofi.rpc")
    local handlers = nil
    local set_handlers = rpc.set_handlers
    rpc.set_handlers = function(h)
      handlers = h
      set_handlers(h)
    end
    local lofi = require("lofi")
    lofi.setup(mpv_config())
    fake_daemon(default_answers())
    local seen = t.record_user_events({ "LofiRadioStop" })
    local messages = t.capture_notify()
    start_station()
    local pid = require("lofi.radio").current().player.pid
    assert(handlers).exit({ pid = 42, exit_code = 1, stopping = false, stderr_tail = "" })
    t.eq(#seen, 1)
    t.eq(seen[1].data.reason, "daemon")
    t.contains(seen[1].data.message, "pid 42")
    t.contains(t.joined(messages), "radio stopped: the daemon (pid 42)")
    t.wait(3000, function()
      return not t.alive(pid)
    end, "mpv to end")
  end)

  t.it("falls back to one file after another with another player", function()
    local dir = t.tmpdir()
    local pidfile = dir .. "/pids"
    vim.env.LOFI_FAKE_PLAYER_SECONDS = "0.5"
    local ok, err = pcall(function()
      local lofi = require("lofi")
      lofi.setup({ notify = false, player = { cmd = { "sh", FAKE, pidfile } } })
      require("lofi.radio_playback").TICK_MS = 100
      local sent = fake_daemon(default_answers())
      start_station()
      t.eq(require("lofi.radio").current().gapless, false)
      segment(0, wav.write(dir .. "/0.wav", 0.5), 0.5)
      segment(1, wav.write(dir .. "/1.wav", 0.5), 0.5)
      t.wait(5000, function()
        return #vim.tbl_filter(function(item)
          return item.params.index == 1
        end, requests(sent, "radio.position")) > 0
      end, "the second file to play")
      t.wait(2000, function()
        return #vim.fn.readfile(pidfile) == 2
      end, "the second player process")
      local played = vim.tbl_map(function(line)
        return vim.fn.fnamemodify(line:match(" (.*)$"), ":t")
      end, vim.fn.readfile(pidfile))
      t.eq(played, { "0.wav", "1.wav" })
      t.wait(3000, function()
        return require("lofi.radio").current().idle
      end, "the end of the playlist")
      lofi.radio.stop()
      t.eq(require("lofi.player").current(), nil)
    end)
    vim.env.LOFI_FAKE_PLAYER_SECONDS = nil
    assert(ok, err)
  end)

  t.it("reports what cannot be done without a station", function()
    local messages = t.capture_notify()
    vim.cmd("Lofi radio stop")
    vim.cmd("Lofi radio skip")
    vim.cmd("Lofi radio tempo=9")
    t.wait(1000, function()
      return #messages >= 3
    end, "three messages")
    local text = t.joined(messages)
    t.contains(text, "no radio station is playing")
    t.contains(text, "RADIO_NOT_ACTIVE")
    t.contains(text, ":Lofi radio")
    t.contains(text, "unknown key `tempo`")
  end)
end)

t.describe("radio save (simulated daemon)", function()
  --- A station played by the fake player (no mpv needed), with `radio.save` answered as the
  --- daemon does: at once, the file still to be written.
  local function saving_station()
    local lofi = require("lofi")
    local pidfile = t.tmpdir() .. "/pids"
    lofi.setup({ notify = true, player = { cmd = { "sh", FAKE, pidfile } } })
    local answers = default_answers()
    answers["radio.save"] = function(params)
      local path = params.path or "/music/lofi.nvim/radio-default.flac"
      return nil, { status = "saving", path = path, segments = 3, first_index = 0 }
    end
    local sent = fake_daemon(answers)
    start_station()
    return lofi, sent
  end

  local function route(method, params)
    require("lofi.routing").route(method, vim.tbl_extend("force", { station_id = STATION }, params))
  end

  t.it("starts a save, then reports it when radio_saved comes", function()
    local lofi, sent = saving_station()
    local messages = t.capture_notify()
    local dir = t.tmpdir()
    vim.cmd.cd(dir)
    vim.cmd("Lofi radio save out/session.flac")
    local path = vim.uv.cwd() .. "/out/session.flac"
    t.wait(2000, function()
      return #require("lofi.radio_save").running() == 1
    end, "the save to start")
    t.eq(requests(sent, "radio.save")[1].params.path, path, "a relative name is made absolute")
    t.contains(t.joined(messages), "radio: saving " .. path .. " …")
    t.eq(#messages, 1, "only the saving message so far: " .. t.joined(messages))
    route("radio_saved", {
      path = path,
      duration_sec = 14.6,
      segments = 3,
      first_index = 0,
      missing = 0,
    })
    t.eq(messages[#messages].msg, "[lofi] radio: saved " .. path .. " (15 s, 3 segments)")
    t.eq(require("lofi.radio_save").running(), {})
    lofi.radio.save("~/keep.flac")
    t.wait(2000, function()
      return #require("lofi.radio_save").running() == 1
    end, "the second save")
    t.eq(requests(sent, "radio.save")[2].params.path, vim.uv.os_homedir() .. "/keep.flac")
  end)

  t.it("calls back when the file is written or the save failed, after the station too", function()
    local lofi = saving_station()
    local results = {}
    local function save(path)
      lofi.radio.save(path, function(err, result)
        table.insert(results, { path = path, err = err, result = result })
      end)
    end
    save("/music/a.flac")
    t.wait(2000, function()
      return #require("lofi.radio_save").running() == 1
    end, "the first save to start")
    t.eq(#results, 0, "the reply only confirms the start")
    lofi.radio.stop()
    route("radio_saved", {
      path = "/music/a.flac",
      duration_sec = 3600,
      segments = 40,
      first_index = 80,
      missing = 80,
    })
    t.eq(#results, 1)
    t.eq(results[1].err, nil)
    t.eq(results[1].result.first_index, 80)
    t.eq(
      require("lofi.radio_save").describe(results[1].result),
      "radio: saved /music/a.flac (3600 s, 40 segments, the first 80 segments had left the cache)"
    )
    start_station()
    save("/music/b.flac")
    t.wait(2000, function()
      return #require("lofi.radio_save").running() == 1
    end, "the second save to start")
    local messages = t.capture_notify()
    route("radio_save_failed", { path = "/music/other.flac", code = -32018, message = "x" })
    t.eq(#results, 1, "another path's failure is not this save's")
    t.contains(t.joined(messages), "saving /music/other.flac failed: x") -- a timed-out save's end
    route("radio_save_failed", { path = "/music/b.flac", code = -32018, message = "disk full" })
    t.eq(#results, 2)
    t.eq(results[2].err.name, "OUTPUT_WRITE_FAILED")
    t.contains(results[2].err.message, "saving /music/b.flac failed: disk full")
  end)

  t.it("says what went wrong: refused at once, or the daemon gone", function()
    local lofi, sent = saving_station()
    local messages = t.capture_notify()
    local answers = default_answers()
    answers["radio.save"] = function()
      return require("lofi.errors").new(-32013, "a save is already running (/music/a.flac)")
    end
    fake_daemon(answers)
    lofi.radio.save("/music/c.flac")
    t.wait(2000, function()
      return #messages > 0
    end, "the refusal")
    t.contains(t.joined(messages), "a save is already running (/music/a.flac)")
    t.eq(require("lofi.radio_save").running(), {})
    t.eq(#sent, 1, "radio.start only on the first fake daemon")
    local status, err = "pending", nil
    answers["radio.save"] = { status = "saving", path = "/music/d.flac", segments = 2 }
    lofi.radio.save("/music/d.flac", function(e)
      status, err = "done", e
    end)
    t.wait(2000, function()
      return #require("lofi.radio_save").running() == 1
    end, "the save to start")
    t.eq(require("lofi.radio").daemon_exited({ stopping = false }, "the daemon crashed"), true)
    t.eq(status, "done")
    t.eq(err.name, "DAEMON_EXITED")
    t.contains(err.message, "saving /music/d.flac stopped: the daemon crashed")
  end)
end)

t.describe("radio health", function()
  t.it("says whether the radio plays gaplessly", function()
    require("lofi").setup(t.config({ player = { cmd = { "sh", FAKE, "/dev/null" } } }))
    vim.cmd("silent checkhealth lofi")
    local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n")
    t.contains(text, "lofi.nvim: radio")
    t.contains(text, "one after another")
  end)
end)
