--- Playback through an external player. The plugin owns at most one player process (started
--- with `lofi.process`) and only ever signals that process (through its own libuv handle).
---
--- Pause and resume send SIGSTOP and SIGCONT to the player process (POSIX systems only): the
--- player freezes where it is and continues from there. Looping uses the player's own loop
--- option where it has one (mpv, ffplay) and otherwise starts the player again when the track
--- ends.
local config = require("lofi.config")
local errors = require("lofi.errors")
local log = require("lofi.log")
local process = require("lofi.process")
local user = require("lofi.user")

--- How long a stopped player gets between SIGTERM and SIGKILL.
local STOP_GRACE_MS = 1000

local M = {}

---@class lofi.PlayerSpec
---@field name string executable
---@field args string[] arguments before the file
---@field loop_args? string[] arguments that make the player repeat the file forever

--- Known players, in the order they are tried.
---@type lofi.PlayerSpec[]
M.known = {
  {
    name = "mpv",
    args = { "--no-video", "--no-terminal", "--really-quiet" },
    loop_args = { "--loop-file=inf" },
  },
  {
    name = "ffplay",
    args = { "-nodisp", "-loglevel", "quiet" },
    loop_args = { "-loop", "0" },
  },
  { name = "pw-play", args = {} },
  { name = "paplay", args = {} },
  { name = "afplay", args = {} },
  { name = "aplay", args = { "-q" } },
}

--- Placeholder in `player.cmd` replaced by the file to play (else the file is appended).
M.FILE_PLACEHOLDER = "{file}"

--- The command that plays `path`.
---@param path string
---@param cfg lofi.PlayerConfig
---@return string[]? argv
---@return boolean native_loop the player repeats the file itself
---@return lofi.Error? err
function M.command(path, cfg)
  if cfg.cmd then
    local argv, replaced = {}, false
    for _, arg in ipairs(cfg.cmd) do
      if arg == M.FILE_PLACEHOLDER then
        argv[#argv + 1] = path
        replaced = true
      else
        argv[#argv + 1] = arg
      end
    end
    if not replaced then
      argv[#argv + 1] = path
    end
    if vim.fn.executable(argv[1]) ~= 1 then
      return nil,
        false,
        errors.new(
          errors.client.PLAYER_NOT_FOUND,
          string.format("player.cmd[1] %q is not an executable", argv[1])
        )
    end
    return argv, false, nil
  end
  local spec = M.detect()
  if not spec then
    local names = vim.tbl_map(function(s)
      return s.name
    end, M.known)
    return nil,
      false,
      errors.new(
        errors.client.PLAYER_NOT_FOUND,
        "no audio player found (tried " .. table.concat(names, ", ") .. ")"
      )
  end
  local argv = { spec.name }
  vim.list_extend(argv, spec.args)
  local native_loop = cfg.loop and spec.loop_args ~= nil
  if native_loop then
    vim.list_extend(argv, spec.loop_args)
  elseif spec.name == "ffplay" then
    table.insert(argv, "-autoexit")
  end
  table.insert(argv, path)
  return argv, native_loop, nil
end

--- The first known player installed, if any.
---@return lofi.PlayerSpec?
function M.detect()
  for _, spec in ipairs(M.known) do
    if vim.fn.executable(spec.name) == 1 then
      return spec
    end
  end
  return nil
end

---@class lofi.Playback
---@field process lofi.Process
---@field pid integer
---@field track lofi.Track
---@field argv string[]
---@field paused boolean
---@field stopping boolean
---@field loop boolean repeat by starting again when the track ends

---@type lofi.Playback? what plays now
local current = nil

---@param playback lofi.Playback
local function on_exit(playback)
  local code, signal = playback.process.exit_code or -1, playback.process.exit_signal or 0
  log.debug("player pid %d exited (code %d, signal %d)", playback.pid, code, signal)
  if current ~= playback then
    return
  end
  current = nil
  if playback.stopping then
    return
  end
  if code ~= 0 then
    log.warn("player %s exited with code %d", playback.argv[1], code)
    user.notify(
      string.format("the player %s exited with code %d", playback.argv[1], code),
      vim.log.levels.WARN
    )
    return
  end
  if playback.loop then
    M.play(playback.track)
  end
end

--- Play a track (a track table or a file path), stopping what plays now.
---@param track lofi.Track|string
---@param opts? {loop?: boolean}
---@return integer? pid
---@return lofi.Error? err
function M.play(track, opts)
  if type(track) == "string" then
    track = { path = track }
  end
  if type(track) ~= "table" or type(track.path) ~= "string" then
    return nil, errors.new(errors.client.NO_TRACK, "no track to play")
  end
  if not vim.uv.fs_stat(track.path) then
    return nil,
      errors.new(errors.client.NO_TRACK, string.format("the file %s does not exist", track.path))
  end
  local cfg = vim.deepcopy(config.get().player)
  if opts and opts.loop ~= nil then
    cfg.loop = opts.loop
  end
  local argv, native_loop, err = M.command(track.path, cfg)
  if not argv then
    return nil, err
  end
  M.stop()
  ---@type lofi.Playback
  local playback = {
    pid = -1,
    track = track,
    argv = argv,
    paused = false,
    stopping = false,
    loop = cfg.loop and not native_loop,
  } --[[@as lofi.Playback]]
  local proc, spawn_err = process.spawn(argv, {
    on_stderr = function(chunk)
      log.debug("player: %s", vim.trim(chunk))
    end,
    on_exit = function()
      on_exit(playback)
    end,
    -- The end of the track matters, not the player's last words (loop starts it again).
    drain_ms = 0,
  })
  if not proc then
    return nil,
      errors.new(
        errors.client.PLAYER_NOT_FOUND,
        string.format("cannot start %s: %s", argv[1], tostring(spawn_err))
      )
  end
  playback.process = proc
  playback.pid = proc.pid
  current = playback
  log.info("player pid %d: %s", playback.pid, table.concat(argv, " "))
  return playback.pid, nil
end

--- Stop playback: SIGTERM to the player process (SIGKILL if it is still there after 1 s).
---@return boolean stopped something was playing
function M.stop()
  local playback = current
  if not playback then
    return false
  end
  current = nil
  playback.stopping = true
  if playback.paused then
    playback.process:kill("sigcont")
  end
  playback.process:terminate(STOP_GRACE_MS)
  return true
end

---@return boolean
local function can_signal()
  return vim.fn.has("win32") == 0
end

--- Pause playback (SIGSTOP to the player).
---@return boolean ok
---@return lofi.Error? err
function M.pause()
  if not current then
    return false, errors.new(errors.client.NO_TRACK, "nothing is playing")
  end
  if not can_signal() then
    return false, errors.new(errors.client.NOT_SUPPORTED, "pause needs SIGSTOP (not on Windows)")
  end
  if not current.paused then
    current.process:kill("sigstop")
    current.paused = true
  end
  return true, nil
end

--- Resume paused playback (SIGCONT to the player).
---@return boolean ok
---@return lofi.Error? err
function M.resume()
  if not current then
    return false, errors.new(errors.client.NO_TRACK, "nothing is playing")
  end
  if current.paused then
    current.process:kill("sigcont")
    current.paused = false
  end
  return true, nil
end

---@return {pid: integer, track: lofi.Track, paused: boolean, argv: string[]}? playing what
---   plays now
function M.current()
  if not current then
    return nil
  end
  return { pid = current.pid, track = current.track, paused = current.paused, argv = current.argv }
end

return M
