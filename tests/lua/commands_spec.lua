-- :Lofi subcommands that talk to the real daemon, and request timeouts.
local t = require("lofi_test")

t.describe(":Lofi with a daemon", function()
  t.it("setup of an installed backend verifies it and says so", function()
    require("lofi").setup(t.config())
    local messages = t.capture_notify()
    vim.cmd("Lofi setup ace-step")
    t.wait(60000, function()
      return #messages >= 2
    end, "the setup answer")
    local last = messages[#messages]
    t.eq(last.level, vim.log.levels.INFO, t.joined(messages))
    t.contains(last.msg, "ace-step already installed and verified in " .. t.env("LOFI_TEST_MODELS"))
  end)

  t.it("setup ace-step-1.5 asks the daemon for that backend and shows its answer", function()
    local models = vim.fs.joinpath(t.tmpdir(), "ace-step")
    require("lofi").setup(t.config({ daemon = { models_dir = models } }))
    local messages = t.capture_notify()
    local seen = t.record_user_events({ "LofiSetupError" })
    local missing = vim.fs.joinpath(t.tmpdir(), "no-checkpoint")
    vim.cmd("Lofi setup ace-step-1.5 checkpoint=" .. vim.fn.fnameescape(missing))
    t.wait(60000, function()
      return #messages >= 2
    end, "the setup answer")
    t.eq(messages[1].msg, "[lofi] setting up ace-step-1.5 …")
    t.eq(messages[2].level, vim.log.levels.ERROR)
    t.contains(messages[2].msg, missing .. " is not an ACE-Step 1.5 turbo checkpoint")
    t.contains(messages[2].msg, "Point checkpoint= at a folder")
    t.eq(seen[1].data.backend, "ace-step-1.5")
  end)

  t.it("config backend checks the name against the daemon's backends", function()
    local config = require("lofi.config")
    local state = require("lofi.backend").state_path()
    require("lofi").setup(t.config())
    local messages = t.capture_notify()
    vim.cmd("Lofi config backend nope")
    t.wait(30000, function()
      return #messages >= 1
    end, "the answer")
    t.eq(messages[1].level, vim.log.levels.ERROR)
    t.contains(messages[1].msg, 'unknown backend "nope" (available: ace-step')
    t.eq(config.get().generate.backend, nil)
    vim.cmd("Lofi config backend ace-step")
    t.wait(10000, function()
      return #messages >= 2
    end, "the second answer")
    t.contains(messages[2].msg, "backend: ace-step (ready)")
    t.ok(vim.uv.fs_stat(state), "the choice is saved in " .. state)
    vim.cmd("Lofi config backend default")
    t.eq(vim.uv.fs_stat(state), nil, "and forgotten")
  end)

  t.it("names the backend in use and each backend's status (both backends listed)", function()
    require("lofi").setup(t.config())
    local messages = t.capture_notify()
    vim.cmd("Lofi config backend")
    t.wait(30000, function()
      return #messages >= 1
    end, "the answer")
    local text = messages[1].msg
    -- the daemon's default: ace-step, its only installed backend
    t.contains(text, "backend: ace-step (the daemon's default)")
    t.contains(text, "ace-step ready, ace-step-1.5 not installed")
    local backends
    require("lofi").backends(function(_, result)
      backends = result
    end)
    t.wait(10000, function()
      return backends ~= nil
    end, "backends()")
    local by_name = {}
    for _, entry in ipairs(backends) do
      by_name[entry.name] = entry
    end
    t.eq(by_name["ace-step"].default, true)
    t.eq(by_name["ace-step-1.5"].default, false)
    t.ok(vim.list_contains(by_name["ace-step-1.5"].params, "lyrics"), "1.5 takes lyrics")
    t.ok(not vim.list_contains(by_name["ace-step"].params, "lyrics"), "v1 does not")
    -- a song option on v1 is refused by the daemon, naming the backend, and shown as it is
    local got
    require("lofi").generate({ prompt = "x", duration = 5, steps = 1, bpm = 80 }, function(err)
      got = err or false
    end)
    t.wait(30000, function()
      return got ~= nil
    end, "the answer to generate")
    t.eq(got and got.name, "INVALID_PARAMETER")
    t.contains(got.message, "bpm")
    t.contains(got.message, "ace-step")
    t.eq(require("lofi.status").backend(), "ace-step")
  end)

  t.it("config variant checks the name, and a set variant goes with every generation", function()
    local lofi = require("lofi")
    local config = require("lofi.config")
    lofi.setup(t.config())
    local messages = t.capture_notify()
    -- the daemon lists the installed variants (none in the test models): the name is refused
    vim.cmd("Lofi config variant chill")
    t.wait(30000, function()
      return #messages >= 1
    end, "the answer")
    t.eq(messages[1].level, vim.log.levels.ERROR)
    t.contains(messages[1].msg, 'unknown variant "chill" (available: none installed)')
    t.eq(config.get().generate.variant, nil)
    -- a variant set in the configuration is sent as it is, and the daemon refuses it
    lofi.setup(vim.tbl_deep_extend("force", t.config(), { generate = { variant = "chill" } }))
    local rpc = require("lofi.rpc")
    local request, sent = rpc.request, {}
    rpc.request = function(method, params, ...)
      if method == "generate" then
        table.insert(sent, params)
      end
      return request(method, params, ...)
    end
    local got
    lofi.generate({ prompt = "x", duration = 5, steps = 1, seed = 1 }, function(err)
      got = err or false
    end)
    t.wait(30000, function()
      return got ~= nil
    end, "the answer to generate")
    t.eq(sent[1].variant, "chill")
    t.ok(got, "the daemon refuses a variant that is not installed")
  end)

  t.it("status, log and delete", function()
    local lofi = require("lofi")
    lofi.setup(t.config())
    local messages = t.capture_notify()
    vim.cmd("Lofi status")
    t.contains(messages[1].msg, "daemon: not running")
    t.contains(messages[1].msg, "models: " .. t.env("LOFI_TEST_MODELS"))
    t.contains(messages[1].msg, "last track: none yet")
    local track
    lofi.generate({ prompt = "short", duration = 5, steps = 2, seed = 1 }, function(err, tr)
      t.eq(err, nil)
      track = tr
    end)
    t.wait(60000, function()
      return track ~= nil
    end, "the track")
    vim.cmd("Lofi status")
    t.wait(30000, function()
      return #messages >= 2
    end, "the status")
    local text = messages[2].msg
    t.contains(text, "daemon: running (pid " .. require("lofi.client").pid() .. ", version ")
    t.contains(text, "generating: nothing")
    t.contains(text, "backend: ace-step (the daemon's default)")
    t.contains(text, "backends: ace-step ready, ace-step-1.5 not installed")
    t.contains(text, "models: " .. t.env("LOFI_TEST_MODELS") .. " (ready, model version ")
    t.contains(text, "provider: CPUExecutionProvider")
    t.contains(text, "last track: " .. track.path)

    vim.cmd("Lofi log")
    t.eq(vim.api.nvim_buf_get_name(0), require("lofi.log").daemon_path())
    t.contains(table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n"), "lofi_daemon")

    local deleted, listed = false, nil
    lofi.delete_track(track.track_id, function(err)
      t.eq(err, nil)
      deleted = true
    end)
    t.wait(10000, function()
      return deleted
    end, "delete")
    t.eq(vim.uv.fs_stat(track.path), nil, "the file is gone")
    lofi.tracks(function(_, tracks)
      listed = tracks
    end)
    t.wait(10000, function()
      return listed ~= nil
    end, "tracks")
    t.eq(listed, {})
  end)

  t.it("names daemon.models_dir, not --models, when the models are missing", function()
    local lofi = require("lofi")
    lofi.setup(t.config({ daemon = { models_dir = t.tmpdir() } }))
    local got
    lofi.generate({ prompt = "rain", duration = 5, steps = 2 }, function(err)
      got = err
    end)
    t.wait(30000, function()
      return got ~= nil
    end, "the error")
    t.eq(got.name, "MODEL_NOT_FOUND")
    t.contains(got.remedy, "daemon.models_dir")
    t.ok(not got.remedy:find("--models", 1, true), "no CLI flag in: " .. got.remedy)
  end)
end)

t.describe("requests", function()
  t.it("time out once when the daemon does not answer", function()
    local script = vim.fs.joinpath(t.tmpdir(), "silent-daemon.sh")
    vim.fn.writefile({ "#!/bin/sh", "exec sleep 30" }, script)
    vim.uv.fs_chmod(script, tonumber("755", 8))
    require("lofi").setup(t.config({
      daemon = { cmd = { script }, request_timeout_ms = 300, shutdown_timeout_ms = 400 },
    }))
    local calls = {}
    require("lofi").backends(function(err, result)
      table.insert(calls, { err = err, result = result })
    end)
    t.wait(3000, function()
      return #calls > 0
    end, "the timeout")
    t.sleep(300)
    t.eq(#calls, 1)
    t.eq(calls[1].err.name, "TIMEOUT")
    t.contains(calls[1].err.message, "backends.list got no answer within 300 ms")
    local pid = require("lofi.client").pid()
    t.ok(pid and t.alive(pid))
    t.ok(require("lofi").shutdown(400), "a daemon that ignores stdin is killed in time")
    t.ok(not t.alive(pid))
  end)
end)
