-- The real daemon with the tiny models: generate, cancel, crash recovery, shutdown.
local t = require("lofi_test")

local SHORT = { duration = 5, steps = 3 }
-- Long enough to still be running when the test acts on its first progress report.
local LONG = { duration = 5, steps = 200 }

---@param extra table
---@return table
local function opts(extra)
  return vim.tbl_extend("force", extra, { prompt = "rainy night lofi, soft piano" })
end

--- Record every lofi event (Lua side) in order.
local function record_events()
  local lofi = require("lofi")
  local seen = {}
  for _, name in ipairs(require("lofi.events").names()) do
    lofi.on(name, function(data)
      table.insert(seen, { name = name, data = data })
    end)
  end
  return seen
end

---@param seen {name: string}[]
---@return string[]
local function names_of(seen)
  local names = {}
  for _, item in ipairs(seen) do
    if names[#names] ~= item.name then
      table.insert(names, item.name)
    end
  end
  return names
end

--- Call `lofi.generate` and collect its callback calls.
local function generate(options)
  local calls = {}
  require("lofi").generate(options, function(err, track)
    table.insert(calls, { err = err, track = track })
  end)
  return calls
end

local function wait_calls(calls, timeout_ms)
  t.wait(timeout_ms or 60000, function()
    return #calls > 0
  end, "the generate() callback")
  t.sleep(300)
  t.eq(#calls, 1, "the callback ran exactly once")
  return calls[1]
end

t.describe("generate", function()
  t.it("emits start, progress and complete in order and calls back once with a file", function()
    local lofi = require("lofi")
    local cfg = t.config()
    lofi.setup(cfg)
    local seen = record_events()
    local autocmds = t.record_user_events({
      "LofiGenerationStart",
      "LofiGenerationProgress",
      "LofiGenerationComplete",
    })
    local float_seen, status_seen = false, nil
    lofi.on("generation_progress", function()
      float_seen = float_seen or require("lofi.progress").win() ~= nil
      status_seen = status_seen or lofi.status()
    end)
    local calls = generate(opts(vim.tbl_extend("force", SHORT, { seed = 11 })))
    local call = wait_calls(calls)
    t.eq(call.err, nil)
    local track = call.track
    t.ok(track and track.path, "a track with a path")
    local stat = vim.uv.fs_stat(track.path)
    t.ok(stat and stat.size > 1000, "the audio file exists and is not empty")
    t.eq(vim.fs.dirname(track.path), cfg.daemon.cache_dir)
    t.eq(track.seed, 11)
    t.eq(track.prompt, "rainy night lofi, soft piano")

    t.eq(names_of(seen), { "generation_start", "generation_progress", "generation_complete" })
    local percents = {}
    for _, item in ipairs(seen) do
      t.eq(item.data.track_id, track.track_id)
      if item.name == "generation_progress" then
        table.insert(percents, item.data.percent)
      end
    end
    t.eq(percents[#percents], 100)
    for i = 2, #percents do
      t.ok(percents[i] >= percents[i - 1], "progress never goes back")
    end
    local patterns = vim.tbl_map(function(a)
      return a.pattern
    end, autocmds)
    t.eq(patterns[1], "LofiGenerationStart")
    t.eq(patterns[#patterns], "LofiGenerationComplete")
    t.eq(#autocmds, #seen, "one User autocmd per event")
    t.eq(autocmds[#autocmds].data.path, track.path)
    t.ok(float_seen, "the progress float was open during the generation")
    t.ok(status_seen and status_seen:match("^♪ %d+%%%%"), "statusline text while generating")
    t.eq(require("lofi.progress").win(), nil, "the float closed")
    t.eq(lofi.status(), "")
    t.eq(lofi.last_track().path, track.path)
  end)

  t.it("serves the same request twice from one generation, each callback once", function()
    local lofi = require("lofi")
    lofi.setup(t.config())
    local options = opts(vim.tbl_extend("force", SHORT, { seed = 5 }))
    local first, second = generate(options), generate(options)
    t.wait(60000, function()
      return #first > 0 and #second > 0
    end, "both callbacks")
    t.sleep(300)
    t.eq({ #first, #second }, { 1, 1 })
    t.eq(first[1].track.path, second[1].track.path)
    local again = generate(options)
    local call = wait_calls(again)
    t.eq(call.track.cached, true, "a repeat is served from the cache")
  end)

  t.it("lists tracks and plays one picked in :Lofi tracks", function()
    local lofi = require("lofi")
    local pidfile = vim.fs.joinpath(t.tmpdir(), "pids")
    lofi.setup(t.config({
      player = { cmd = { "sh", t.root .. "/tests/lua/fake_player.sh", pidfile } },
    }))
    local call = wait_calls(generate(opts(vim.tbl_extend("force", SHORT, { seed = 3 }))))
    local listed
    lofi.tracks(function(err, tracks)
      listed = { err = err, tracks = tracks }
    end)
    t.wait(10000, function()
      return listed ~= nil
    end, "tracks()")
    t.eq(listed.err, nil)
    t.eq(#listed.tracks, 1)
    t.eq(listed.tracks[1].track_id, call.track.track_id)
    local offered
    vim.ui.select = function(items, select_opts, on_choice)
      offered = vim.tbl_map(select_opts.format_item, items)
      on_choice(items[1], 1)
    end
    vim.cmd("Lofi tracks")
    t.wait(10000, function()
      return require("lofi.player").current() ~= nil
    end, "the player")
    t.contains(offered[1], "rainy night lofi, soft piano")
    t.eq(require("lofi.player").current().track.path, call.track.path)
    t.wait(5000, function()
      -- The line, not just the file: the player creates the file before it writes to it.
      return vim.uv.fs_stat(pidfile) ~= nil and (vim.fn.readfile(pidfile)[1] or "") ~= ""
    end, "the fake player's pid file")
    t.contains(vim.fn.readfile(pidfile)[1], call.track.path)
  end)

  t.it("completes :Lofi play with cached track ids and prompts, and plays by prompt", function()
    local lofi = require("lofi")
    local pidfile = vim.fs.joinpath(t.tmpdir(), "pids")
    lofi.setup(t.config({
      player = { cmd = { "sh", t.root .. "/tests/lua/fake_player.sh", pidfile } },
    }))
    local call = wait_calls(generate(opts(vim.tbl_extend("force", SHORT, { seed = 24 }))))
    t.eq(call.err, nil)
    local commands = require("lofi.commands")
    local items = {}
    t.wait(10000, function()
      items = commands.complete("", "Lofi play ")
      return #items > 0
    end, "completion items")
    local escaped = "rainy\\ night\\ lofi,\\ soft\\ piano"
    t.eq(items, { escaped, call.track.track_id })
    t.eq(commands.complete("rainy", "Lofi play rainy"), { escaped })
    t.eq(commands.complete("zzz", "Lofi play zzz"), {})
    vim.cmd("Lofi play " .. escaped)
    t.wait(10000, function()
      return require("lofi.player").current() ~= nil
    end, "the player")
    t.eq(require("lofi.player").current().track.path, call.track.path)
  end)

  t.it("auto-plays a finished track with the configured player", function()
    local lofi = require("lofi")
    local pidfile = vim.fs.joinpath(t.tmpdir(), "pids")
    lofi.setup(t.config({
      player = {
        autoplay = true,
        cmd = { "sh", t.root .. "/tests/lua/fake_player.sh", pidfile },
      },
    }))
    local quiet = generate(opts({ duration = 5, steps = 2, seed = 8, play = false }))
    wait_calls(quiet)
    t.eq(require("lofi.player").current(), nil, "play = false overrides autoplay")
    vim.cmd("Lofi generate rainy night lofi duration=5 steps=2 seed=9")
    t.wait(60000, function()
      return require("lofi.player").current() ~= nil
    end, "auto-play")
    local playing = require("lofi.player").current()
    t.wait(5000, function()
      -- The line, not just the file: the player creates the file before it writes to it.
      return vim.uv.fs_stat(pidfile) ~= nil and (vim.fn.readfile(pidfile)[1] or "") ~= ""
    end, "the pid file")
    local recorded = vim.fn.readfile(pidfile)[1]
    t.eq(tonumber(recorded:match("^(%d+)")), playing.pid)
    t.contains(recorded, playing.track.path)
    t.contains(lofi.status(), "▶ rainy night lofi")
  end)
end)

t.describe("hostile prompts", function()
  t.it("generates from a multi-line prompt, then a normal generate works", function()
    local lofi = require("lofi")
    -- The setup default prompt, as a user's config may hold it.
    lofi.setup(t.config({ generate = { prompt = "rainy night\nsoft piano\n" } }))
    local float_seen = false
    lofi.on("generation_progress", function()
      float_seen = float_seen or require("lofi.progress").win() ~= nil
    end)
    local first = wait_calls(generate(vim.tbl_extend("force", SHORT, { seed = 21 })))
    t.eq(first.err, nil)
    t.eq(first.track.prompt, "rainy night\nsoft piano\n")
    t.ok(float_seen, "the progress float showed the prompt")
    t.eq(lofi.active(), {}, "nothing is left waiting")
    local second = wait_calls(generate(opts(vim.tbl_extend("force", SHORT, { seed = 22 }))))
    t.eq(second.err, nil)
    t.ok(vim.uv.fs_stat(second.track.path), "the session recovered")
  end)

  t.it("answers a prompt that is not UTF-8 at once, then generates", function()
    local lofi = require("lofi")
    lofi.setup(t.config())
    local bad = generate({ prompt = "rain \xff" })
    t.wait(2000, function()
      return #bad > 0
    end, "the immediate answer")
    t.eq(bad[1].err.name, "INVALID_PROMPT")
    t.contains(bad[1].err.message, "not valid UTF-8")
    local good = wait_calls(generate(opts(vim.tbl_extend("force", SHORT, { seed = 23 }))))
    t.eq(good.err, nil)
  end)
end)

t.describe("cancel", function()
  t.it("clears the statusline and redraws it after a cancel", function()
    local lofi = require("lofi")
    lofi.setup(t.config())
    local original = vim.cmd.redrawstatus
    local redraws, at_cancel, during = 0, nil, nil
    vim.cmd.redrawstatus = function()
      redraws = redraws + 1
    end
    local ok, err = pcall(function()
      lofi.on("generation_progress", function()
        if during == nil then
          during = lofi.status()
          lofi.cancel()
        end
      end)
      lofi.on("generation_cancelled", function()
        at_cancel = redraws
      end)
      local call = wait_calls(generate(opts(LONG)), 60000)
      t.eq(call.err.name, "GENERATION_CANCELLED")
      t.ok(during and during:match("^♪ %d+%%%%"), "the statusline showed the generation")
      t.eq(lofi.status(), "", "the statusline is empty after the cancel")
      t.wait(2000, function()
        return at_cancel ~= nil and redraws > at_cancel
      end, "a statusline redraw after the cancel")
    end)
    vim.cmd.redrawstatus = original
    assert(ok, err)
  end)

  t.it("cancels a running generation: event, callback, no file", function()
    local lofi = require("lofi")
    local cfg = t.config()
    lofi.setup(cfg)
    local seen = record_events()
    local autocmds = t.record_user_events({ "LofiGenerationCancelled" })
    local cancel_reply
    lofi.on("generation_progress", function(data)
      if cancel_reply == nil then
        cancel_reply = false
        lofi.cancel(nil, function(err, result)
          cancel_reply = { err = err, result = result }
        end)
      end
    end)
    local call = wait_calls(generate(opts(LONG)), 60000)
    local errors = require("lofi.errors")
    t.eq(call.err.code, errors.daemon.GENERATION_CANCELLED)
    t.eq(call.track, nil)
    t.ok(cancel_reply and cancel_reply.err == nil, "the cancel request was accepted")
    local names = names_of(seen)
    t.eq(names[#names], "generation_cancelled")
    t.ok(not vim.list_contains(names, "generation_complete"), "no complete event")
    t.eq(#autocmds, 1)
    local track_id = autocmds[1].data.track_id
    t.eq(call.err.track_id, track_id)
    local files = vim.fn.glob(vim.fs.joinpath(cfg.daemon.cache_dir, track_id .. "*"), false, true)
    t.eq(files, {}, "no file for the cancelled track")
  end)

  t.it("cancels a generation whose request is still unanswered", function()
    local lofi = require("lofi")
    lofi.setup(t.config())
    local calls = generate(opts(LONG))
    lofi.cancel()
    local call = wait_calls(calls, 60000)
    t.eq(call.err.name, "GENERATION_CANCELLED")
  end)

  t.it("says when there is nothing to cancel", function()
    local lofi = require("lofi")
    local got
    lofi.cancel(nil, function(err)
      got = err
    end)
    t.wait(1000, function()
      return got ~= nil
    end, "the cancel callback")
    t.eq(got.name, "NO_TRACK")
  end)
end)

t.describe("daemon crash", function()
  t.it("errors the running generation, then a new daemon serves the next call", function()
    local lofi = require("lofi")
    local client = require("lofi.client")
    local errors = require("lofi.errors")
    lofi.setup(t.config())
    local seen = record_events()
    local exits = t.record_user_events({ "LofiDaemonExit", "LofiGenerationError" })
    local killed_pid
    lofi.on("generation_progress", function()
      if not killed_pid then
        killed_pid = client.pid()
        vim.uv.kill(killed_pid, "sigkill")
      end
    end)
    local call = wait_calls(generate(opts(LONG)), 60000)
    t.eq(call.err.code, errors.client.DAEMON_EXITED)
    t.contains(call.err.message, "killed by signal 9")
    local names = names_of(seen)
    t.ok(vim.list_contains(names, "generation_error"), "an error event")
    t.ok(vim.list_contains(names, "daemon_exit"), "a daemon_exit event")
    local exit_event = vim.tbl_filter(function(e)
      return e.pattern == "LofiDaemonExit"
    end, exits)[1]
    t.eq(exit_event.data.pid, killed_pid)
    t.eq(exit_event.data.expected, false)
    local error_event = vim.tbl_filter(function(e)
      return e.pattern == "LofiGenerationError"
    end, exits)[1]
    t.eq(error_event.data.code, errors.client.DAEMON_EXITED)
    t.eq(client.pid(), nil)

    local next_call = wait_calls(generate(opts(vim.tbl_extend("force", SHORT, { seed = 4 }))))
    t.eq(next_call.err, nil)
    t.ok(vim.uv.fs_stat(next_call.track.path), "the new daemon made a file")
    t.ok(client.pid() and client.pid() ~= killed_pid, "a new daemon")
  end)

  t.it("fails a pending request when the daemon exits at startup", function()
    local lofi = require("lofi")
    local script = vim.fs.joinpath(t.tmpdir(), "bad-daemon.sh")
    vim.fn.writefile(
      { "#!/bin/sh", "echo 'lofi-daemon: cannot start: broken' >&2", "exit 3" },
      script
    )
    vim.uv.fs_chmod(script, tonumber("755", 8))
    lofi.setup(t.config({ daemon = { cmd = { script } } }))
    local got
    lofi.backends(function(err)
      got = err
    end)
    t.wait(10000, function()
      return got ~= nil
    end, "the callback")
    t.eq(got.name, "DAEMON_EXITED")
    t.contains(got.message, "exited with code 3")
    t.contains(got.message, "cannot start: broken")
  end)
end)

t.describe("shutdown", function()
  t.it("stops the daemon it started, within the timeout", function()
    local lofi = require("lofi")
    local client = require("lofi.client")
    lofi.setup(t.config())
    local ready
    lofi.backends(function(err, backends)
      ready = { err = err, backends = backends }
    end)
    t.wait(30000, function()
      return ready ~= nil
    end, "backends()")
    t.eq(ready.err, nil)
    t.eq(ready.backends[1].status, "ready")
    local pid = client.pid()
    t.ok(pid and t.alive(pid), "the daemon runs")
    local started = vim.uv.now()
    t.ok(lofi.shutdown(3000), "shutdown() reports the exit")
    t.ok(vim.uv.now() - started < 3500, "bounded")
    t.wait(2000, function()
      return not t.alive(pid)
    end, "the daemon process to end")
  end)

  t.it("stops the daemon when Neovim exits (VimLeavePre)", function()
    local dir = t.tmpdir()
    local pidfile = vim.fs.joinpath(dir, "pid")
    local script = vim.fs.joinpath(dir, "child.lua")
    local daemon_log = vim.fs.joinpath(dir, "daemon.log")
    local cfg = t.config({ daemon = { log_file = daemon_log } })
    vim.fn.writefile({
      "vim.opt.rtp:prepend(" .. vim.inspect(t.root) .. ")",
      "local lofi = require('lofi')",
      "lofi.setup(" .. vim.inspect(cfg, { newline = " ", indent = "" }) .. ")",
      "local done = false",
      "lofi.backends(function() done = true end)",
      "vim.wait(30000, function() return done end, 20)",
      "local pid = require('lofi.client').pid()",
      "vim.fn.writefile({ tostring(pid) }, " .. vim.inspect(pidfile) .. ")",
    }, script)
    local result = vim.system({ vim.v.progpath, "-l", script }, { text = true }):wait(60000)
    t.eq(result.code, 0, "the child Neovim exited cleanly: " .. (result.stderr or ""))
    local pid = tonumber(vim.fn.readfile(pidfile)[1])
    t.ok(pid, "the child recorded its daemon's pid")
    t.ok(not t.alive(pid), "the daemon was gone when the child Neovim exited")
    local text = table.concat(vim.fn.readfile(daemon_log), "\n")
    t.contains(text, "stopping (shutdown)", "the daemon got a shutdown request")
  end)
end)
