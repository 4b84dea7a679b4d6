-- The station player: a real mpv (--ao=null plays in real time without a sound device) over
-- its JSON IPC socket.
local t = require("lofi_test")
local wav = dofile(t.root .. "/tests/lua/wav.lua")

local uv = vim.uv

---@type lofi.Mpv[]
local started = {}

--- Start mpv with the null audio output; records property changes with their time.
---@param extra? lofi.MpvOpts
---@return lofi.Mpv mpv
---@return {name: string, value: any, ms: integer}[] changes
local function start(extra)
  local changes = {}
  local ready = false
  local opts = vim.tbl_extend("force", {
    extra_args = { "--ao=null" },
    on_ready = function(err)
      assert(err == nil, err)
      ready = true
    end,
    on_property = function(name, value)
      table.insert(changes, { name = name, value = value, ms = uv.hrtime() / 1e6 })
    end,
  }, extra or {})
  local mpv = assert(require("lofi.mpv").start(opts))
  table.insert(started, mpv)
  t.wait(5000, function()
    return ready
  end, "mpv's socket")
  return mpv, changes
end

--- The first change of `name` to `value` at or after `since_ms`.
local function changed(changes, name, value, since_ms)
  for _, change in ipairs(changes) do
    if change.name == name and change.value == value and change.ms >= (since_ms or 0) then
      return change
    end
  end
  return nil
end

--- mpv's reply to get_property, waited for; nil when the property is unavailable (time-pos
--- while a file loads).
local function get(mpv, name)
  local done, value, err = false, nil, nil
  mpv:get(name, function(e, v)
    done, err, value = true, e, v
  end)
  t.wait(2000, function()
    return done
  end, "get_property " .. name)
  assert(err == nil or err == "property unavailable", err)
  return value
end

--- Wait until `name` is available and return it.
local function get_when_available(mpv, name)
  local value = nil
  t.wait(2000, function()
    value = get(mpv, name)
    return value ~= nil
  end, name .. " to be available")
  return value
end

--- Seconds of the playlist played (files of `seconds` each) and the wall clock (ms) of that
--- reading. With gapless playback mpv moves to the next entry while the end of the previous
--- one is still in the audio buffer: time-pos is then negative, which this sum accounts for.
local function played(mpv, seconds)
  while true do
    local pos = get(mpv, "playlist-pos")
    local at = uv.hrtime() / 1e6
    local tpos = get(mpv, "time-pos")
    if tpos ~= nil and pos ~= nil and pos >= 0 and get(mpv, "playlist-pos") == pos then
      return pos * seconds + tpos, at
    end
    t.sleep(20)
  end
end

--- Start mpv (as `start`) with `count` WAV files of `seconds` each appended, and wait until the
--- first one plays.
---@return lofi.Mpv mpv
---@return {name: string, value: any, ms: integer}[] changes
local function start_playing(count, seconds)
  local mpv, changes = start()
  local dir = t.tmpdir()
  for i = 1, count do
    mpv:append(wav.write(vim.fs.joinpath(dir, string.format("seg%d.wav", i)), seconds))
  end
  t.wait(5000, function()
    return changed(changes, "playlist-pos", 0)
  end, "playback to start")
  return mpv, changes
end

--- Start `lofi.mpv` on the shell script `lines` instead of mpv and wait for its `on_ready`
--- error.
---@param lines string[] the script's lines after "#!/bin/sh"
---@param extra? lofi.MpvOpts
---@return lofi.Mpv mpv
---@return string err
local function start_script(lines, extra)
  local script = vim.fs.joinpath(t.tmpdir(), "not-mpv.sh")
  vim.fn.writefile({ "#!/bin/sh", unpack(lines) }, script)
  vim.fn.setfperm(script, "rwx------")
  local err = nil
  local mpv = assert(require("lofi.mpv").start(vim.tbl_extend("force", {
    exe = script,
    on_ready = function(e)
      err = e
    end,
  }, extra or {})))
  table.insert(started, mpv)
  t.wait(3000, function()
    return err ~= nil
  end, "the failure to be reported")
  return mpv, err
end

local function now_ms()
  return uv.hrtime() / 1e6
end

t.describe("mpv", function()
  t.after_each(function()
    for _, mpv in ipairs(started) do
      mpv:stop({ sync = true })
    end
    started = {}
  end)

  t.it("plays appended files back to back without a gap", function()
    local mpv, changes = start_playing(3, 1.0)
    local began = changed(changes, "playlist-pos", 0).ms
    t.wait(2000, function()
      return (get(mpv, "time-pos") or 0) > 0.1
    end, "the first file to play")
    local played_a, wall_a = played(mpv, 1.0)
    t.wait(5000, function()
      return changed(changes, "playlist-pos", 2)
    end, "playlist-pos 2")
    t.ok(changed(changes, "playlist-pos", 1) ~= nil, "the second file played")
    t.wait(2000, function()
      return (get(mpv, "time-pos") or -1) > 0.1
    end, "the third file to be heard")
    local played_b, wall_b = played(mpv, 1.0)
    -- A gap between files would make the wall clock run ahead of what was played.
    local wall = (wall_b - wall_a) / 1000
    t.ok(
      math.abs(wall - (played_b - played_a)) < 0.3,
      string.format("wall %.2f s vs played %.2f s", wall, played_b - played_a)
    )
    t.wait(5000, function()
      return changed(changes, "idle-active", true, began)
    end, "the playlist to end")
    local ended = (changed(changes, "idle-active", true, began).ms - began) / 1000
    t.ok(math.abs(ended - 3.0) < 0.5, string.format("three 1 s files took %.2f s", ended))
  end)

  t.it("pauses, resumes and skips within 1 s", function()
    local mpv, changes = start_playing(2, 6.0)
    t.sleep(300)
    local asked = now_ms()
    mpv:set_pause(true)
    t.wait(1000, function()
      return changed(changes, "pause", true, asked)
    end, "pause within 1 s")
    local paused_at = get_when_available(mpv, "time-pos")
    t.sleep(500)
    t.ok(math.abs(get(mpv, "time-pos") - paused_at) < 0.05, "time-pos stands still while paused")
    asked = now_ms()
    mpv:set_pause(false)
    t.wait(1000, function()
      return changed(changes, "pause", false, asked)
    end, "resume within 1 s")
    t.wait(1000, function()
      return (get(mpv, "time-pos") or 0) > paused_at + 0.1
    end, "playback to move on after resume")
    asked = now_ms()
    local skip_err = "no reply"
    mpv:next(function(err)
      skip_err = err
    end)
    t.wait(1000, function()
      return changed(changes, "playlist-pos", 1, asked)
    end, "skip within 1 s")
    t.eq(skip_err, nil)
    t.ok(get_when_available(mpv, "time-pos") < 1.0, "the next file plays from its start")
  end)

  t.it("stop ends the process and removes the socket", function()
    local mpv = start()
    local pid, socket, dir = mpv.pid, mpv.socket, mpv.dir
    t.ok(t.alive(pid))
    t.ok(uv.fs_stat(socket), "the socket exists while mpv runs")
    mpv:stop()
    t.wait(3000, function()
      return not t.alive(pid)
    end, "mpv to end")
    t.wait(2000, function()
      return uv.fs_stat(dir) == nil
    end, "the socket folder to go")
    local reply = "none"
    mpv:next(function(err)
      reply = err
    end)
    t.wait(1000, function()
      return reply ~= "none"
    end, "a reply after stop")
    t.contains(reply, "not running")
  end)

  t.it("reports an executable that never opens the socket, and ends it", function()
    local mpv, err = start_script({ "exec sleep 600" }, { connect_timeout_ms = 300 })
    t.contains(err, "did not open its IPC socket")
    t.wait(3000, function()
      return not t.alive(mpv.pid)
    end, "the process to be ended")
  end)

  t.it("reports a player that exits at start with its last stderr line", function()
    local mpv, err = start_script({ "echo 'no audio here' >&2", "exit 2" })
    t.contains(err, "no audio here")
    t.eq(vim.uv.fs_stat(mpv.dir), nil, "the socket folder is gone")
  end)
end)
