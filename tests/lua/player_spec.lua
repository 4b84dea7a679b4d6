-- Playback with a fake player process.
local t = require("lofi_test")

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
end)
