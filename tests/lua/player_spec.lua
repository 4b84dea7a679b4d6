-- Playback with a fake player process.
local t = require("lofi_test")

local wav = dofile(t.root .. "/tests/lua/wav.lua")

local FAKE = t.root .. "/tests/lua/fake_player.sh"

--- A file to "play" (the fake player never reads it).
local function track_file()
  local path = vim.fs.joinpath(t.tmpdir(), "track.wav")
  vim.fn.writefile({ "not really audio" }, path)
  return path
end

---@param pidfile string
---@return integer[]
local function recorded_pids(pidfile)
  local pids = {}
  if vim.uv.fs_stat(pidfile) then
    for _, line in ipairs(vim.fn.readfile(pidfile)) do
      table.insert(pids, tonumber(line:match("^(%d+)")))
    end
  end
  return pids
end

--- Start a process that is not the plugin's player and must survive stop().
---@return integer pid
---@return uv.uv_process_t handle
local function bystander(pidfile)
  local handle, pid = vim.uv.spawn("sh", { args = { FAKE, pidfile, "bystander" } }, function() end)
  assert(handle, pid)
  return pid, --[[@as integer]]
    handle
end

--- Run `fn` with environment variables set, restoring them afterwards (also on error).
---@param vars table<string, string>
---@param fn fun()
local function with_env(vars, fn)
  local saved = {}
  for name, value in pairs(vars) do
    saved[name] = vim.env[name]
    vim.env[name] = value
  end
  local ok, err = pcall(fn)
  for name in pairs(vars) do
    vim.env[name] = saved[name]
  end
  assert(ok, err)
end

t.describe("player", function()
  t.it("starts the configured player and stop() ends exactly that process", function()
    local dir = t.tmpdir()
    local pidfile = vim.fs.joinpath(dir, "pids")
    local lofi = require("lofi")
    lofi.setup({ player = { cmd = { "sh", FAKE, pidfile } } })
    local other_pid, other = bystander(vim.fs.joinpath(dir, "other"))
    local file = track_file()
    lofi.play(file)
    local player = require("lofi.player")
    local playing = player.current()
    t.ok(playing, "the player started")
    t.eq(playing.track.path, file)
    t.wait(5000, function()
      return #recorded_pids(pidfile) == 1
    end, "the fake player's pid")
    t.eq(recorded_pids(pidfile)[1], playing.pid, "the plugin holds the player's own pid")
    t.ok(t.alive(playing.pid))
    t.eq(lofi.status(), "▶ track.wav")

    t.ok(lofi.stop(), "stop() stopped something")
    t.wait(3000, function()
      return not t.alive(playing.pid)
    end, "the player to end")
    t.eq(player.current(), nil)
    t.ok(t.alive(other_pid), "an unrelated process with the same command line still runs")
    t.eq(lofi.stop(), false, "nothing left to stop")
    other:kill("sigterm")
    other:close()
  end)

  t.it("keeps one player: playing again replaces the previous process", function()
    local pidfile = vim.fs.joinpath(t.tmpdir(), "pids")
    local lofi = require("lofi")
    lofi.setup({ player = { cmd = { "sh", FAKE, pidfile } } })
    local file = track_file()
    lofi.play(file)
    local first = require("lofi.player").current().pid
    lofi.play(file)
    local second = require("lofi.player").current().pid
    t.neq(first, second)
    t.wait(3000, function()
      return not t.alive(first)
    end, "the first player to end")
    t.ok(t.alive(second))
  end)

  t.it("pauses and resumes with SIGSTOP and SIGCONT", function()
    local pidfile = vim.fs.joinpath(t.tmpdir(), "pids")
    local lofi = require("lofi")
    lofi.setup({ player = { cmd = { "sh", FAKE, pidfile } } })
    lofi.play(track_file())
    local pid = require("lofi.player").current().pid
    t.wait(5000, function()
      return #recorded_pids(pidfile) == 1
    end, "the fake player")
    local function proc_state()
      local f = assert(io.open("/proc/" .. pid .. "/stat", "r"))
      local text = f:read("*a")
      f:close()
      return text:match("^%d+ %b() (%a)")
    end
    t.ok(lofi.pause())
    t.wait(2000, function()
      return proc_state() == "T"
    end, "the player to be stopped")
    t.eq(lofi.status(), "⏸ track.wav")
    t.ok(lofi.resume())
    t.wait(2000, function()
      return proc_state() == "S"
    end, "the player to run again")
  end)

  t.it("loops by starting the player again when the track ends", function()
    local pidfile = vim.fs.joinpath(t.tmpdir(), "pids")
    vim.env.LOFI_FAKE_PLAYER_SECONDS = "0.2"
    local ok, err = pcall(function()
      local lofi = require("lofi")
      lofi.setup({ player = { cmd = { "sh", FAKE, pidfile }, loop = true } })
      lofi.play(track_file())
      t.wait(5000, function()
        return #recorded_pids(pidfile) >= 3
      end, "the player to start three times")
      t.ok(require("lofi.player").current(), "still playing")
    end)
    vim.env.LOFI_FAKE_PLAYER_SECONDS = nil
    assert(ok, err)
  end)

  t.it("reports a missing file and a missing player", function()
    local messages = t.capture_notify()
    local lofi = require("lofi")
    lofi.setup({ player = { cmd = { "/nonexistent/player" } } })
    lofi.play("/nonexistent/track.wav")
    t.wait(1000, function()
      return #messages > 0
    end, "a message")
    lofi.play(track_file())
    t.wait(1000, function()
      return #messages > 1
    end, "a second message")
    local text = t.joined(messages)
    t.contains(text, "PLAYER_NOT_FOUND")
    t.contains(text, '"/nonexistent/player" is not an executable')
    t.eq(require("lofi.player").current(), nil)
  end)

  t.it("picks the first known player on PATH", function()
    local bin = t.tmpdir()
    for _, name in ipairs({ "paplay", "aplay" }) do
      local path = vim.fs.joinpath(bin, name)
      vim.fn.writefile({ "#!/bin/sh" }, path)
      vim.uv.fs_chmod(path, tonumber("755", 8))
    end
    local saved = vim.env.PATH
    vim.env.PATH = bin
    local spec = require("lofi.player").detect()
    vim.env.PATH = saved
    t.eq(spec and spec.name, "paplay")
  end)

  t.it("puts -- before the file for players that take it", function()
    local bin = t.tmpdir()
    local function only(name)
      for _, other in ipairs(vim.fn.readdir(bin)) do
        vim.uv.fs_unlink(vim.fs.joinpath(bin, other))
      end
      local path = vim.fs.joinpath(bin, name)
      vim.fn.writefile({ "#!/bin/sh" }, path)
      vim.uv.fs_chmod(path, tonumber("755", 8))
    end
    local player = require("lofi.player")
    local saved = vim.env.PATH
    local ok, err = pcall(function()
      vim.env.PATH = bin
      for _, name in ipairs({ "mpv", "ffplay", "pw-play", "paplay", "aplay" }) do
        only(name)
        local argv = assert(player.command("-x.wav", { loop = false, autoplay = true }))
        t.eq(argv[1], name)
        t.eq({ argv[#argv - 1], argv[#argv] }, { "--", "-x.wav" }, name)
      end
      only("afplay") -- takes no "--": play() passes an absolute path instead
      t.eq(player.command("-x.wav", { loop = false, autoplay = true }), { "afplay", "-x.wav" })
    end)
    vim.env.PATH = saved
    assert(ok, err)
  end)

  t.it("plays a file named -x.wav with the real mpv", function()
    t.ok(vim.fn.executable("mpv") == 1, "this test needs mpv (apt install mpv)")
    local dir = t.tmpdir()
    wav.write(vim.fs.joinpath(dir, "-x.wav"), 0.2)
    local lines = {}
    local log = require("lofi.log")
    local messages = t.capture_notify()
    local lofi = require("lofi")
    lofi.setup({ log = { level = "debug" } })
    log.set_handler(function(_, line)
      table.insert(lines, line)
    end)
    local player = require("lofi.player")
    table.insert(player.known[1].args, "--ao=null") -- no sound card needed
    local cwd = assert(vim.uv.cwd())
    vim.fn.chdir(dir)
    local ok, err = pcall(function()
      lofi.play("-x.wav")
      local playing = player.current()
      t.ok(playing, "the player started: " .. t.joined(messages))
      t.eq(playing.argv[1], "mpv")
      t.eq(playing.argv[#playing.argv], vim.fs.joinpath(dir, "-x.wav"))
      t.wait(30000, function()
        return player.current() == nil
      end, "mpv to finish the track")
    end)
    vim.fn.chdir(cwd)
    log.set_handler(nil)
    assert(ok, err)
    t.eq(t.joined(messages), "", "no failure message")
    local exit_line = vim.tbl_filter(function(line)
      return line:find("exited (code", 1, true) ~= nil
    end, lines)
    t.eq(#exit_line, 1, table.concat(lines, "\n"))
    t.contains(exit_line[1], "(code 0, signal 0)")
  end)

  t.it("shows and logs the player's last stderr line when it fails", function()
    local pidfile = vim.fs.joinpath(t.tmpdir(), "pids")
    local lines = {}
    with_env({ LOFI_FAKE_PLAYER_FAIL = "cannot open audio device hw:0" }, function()
      local messages = t.capture_notify()
      local lofi = require("lofi")
      lofi.setup({ player = { cmd = { "sh", FAKE, pidfile } } })
      require("lofi.log").set_handler(function(_, line)
        table.insert(lines, line)
      end)
      lofi.play(track_file())
      t.wait(5000, function()
        return #messages > 0
      end, "the failure message")
      require("lofi.log").set_handler(nil)
      t.eq(#messages, 1)
      t.eq(
        messages[1].msg,
        "[lofi] the player sh exited with code 3: fake player: cannot open audio device hw:0"
      )
      t.eq(messages[1].level, vim.log.levels.WARN)
    end)
    t.contains(table.concat(lines, "\n"), "exited with code 3: fake player: cannot open audio")
  end)

  t.it("a player that ignores SIGTERM does not outlive Neovim (no daemon)", function()
    local dir = t.tmpdir()
    local pidfile = vim.fs.joinpath(dir, "pids")
    local script = vim.fs.joinpath(dir, "play.lua")
    vim.fn.writefile({
      string.format(
        "require('lofi').setup({ player = { cmd = { 'sh', %q, %q } } })",
        FAKE,
        pidfile
      ),
      string.format("require('lofi').play(%q)", track_file()),
      string.format(
        "assert(vim.wait(10000, function() return vim.uv.fs_stat(%q) ~= nil end))",
        pidfile
      ),
      "assert(require('lofi.player').current(), 'playing')",
    }, script)
    local result
    with_env({ LOFI_FAKE_PLAYER_IGNORE_TERM = "1" }, function()
      result = vim
        .system({
          vim.v.progpath,
          "--headless",
          "--clean",
          "--cmd",
          "set rtp^=" .. vim.fn.fnameescape(t.root),
          "-c",
          "luafile " .. vim.fn.fnameescape(script),
          "-c",
          "qa",
        }, { text = true })
        :wait(60000)
    end)
    local pid = recorded_pids(pidfile)[1]
    local ok, err = pcall(function()
      t.eq(result.code, 0, "the child Neovim exits cleanly: " .. tostring(result.stderr))
      t.ok(pid, "the player started")
      t.wait(5000, function()
        return not t.alive(pid)
      end, "the player to be gone after :qa")
    end)
    if pid and t.alive(pid) then
      vim.uv.kill(pid, "sigkill")
    end
    assert(ok, err)
  end)

  t.it("autoplay without a player: one warning per session, on the ready line", function()
    local file = track_file()
    with_env({ PATH = t.tmpdir() }, function()
      local messages = t.capture_notify()
      require("lofi").setup({ player = { autoplay = true }, notify = true })
      local generations = require("lofi.generations")
      for i = 1, 2 do
        generations.handlers.generation_complete({
          track_id = string.rep(tostring(i), 16),
          prompt = "rain",
          duration_sec = 6,
          path = file,
        })
      end
      t.eq(#messages, 2, t.joined(messages))
      t.eq(
        messages[1].msg,
        "[lofi] ready: rain (6 s): "
          .. file
          .. " (not played: no audio player found, see :checkhealth lofi)"
      )
      t.eq(messages[2].msg, "[lofi] ready: rain (6 s): " .. file)
    end)
  end)
end)
