--- Playback through an external player. The plugin owns at most one player process and only
--- ever signals that process (through its own libuv handle).
---
--- Pause and resume send SIGSTOP and SIGCONT to the player process (POSIX systems only): the
--- player freezes where it is and continues from there. Looping uses the player's own loop
--- option where it has one (mpv, ffplay) and otherwise starts the player again when the track
--- ends.
local errors = require("lofi.errors")
local log = require("lofi.log")

local uv = vim.uv

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

---@class lofi.PlayerProcess
---@field pid integer
---@field handle uv.uv_process_t
---@field track lofi.Track
---@field argv string[]
---@field paused boolean
---@field stopping boolean
---@field loop boolean repeat by starting again when the track ends

---@type lofi.PlayerProcess?
local current = nil

---@param proc lofi.PlayerProcess
---@param code integer
---@param signal integer
local function on_exit(proc, code, signal)
  if not proc.handle:is_closing() then
    proc.handle:close()
  end
  log.debug("player pid %d exited (code %d, signal %d)", proc.pid, code, signal)
  if current ~= proc then
    return
  end
  current = nil
  if proc.stopping then
    return
  end
  if code ~= 0 then
    log.warn("player %s exited with code %d", proc.argv[1], code)
    vim.notify(
      string.format("[lofi] the player %s exited with code %d", proc.argv[1], code),
      vim.log.levels.WARN
    )
    return
  end
  if proc.loop then
    M.play(proc.track)
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
  if not uv.fs_stat(track.path) then
    return nil,
      errors.new(errors.client.NO_TRACK, string.format("the file %s does not exist", track.path))
  end
  local cfg = vim.deepcopy(require("lofi.config").get().player)
  if opts and opts.loop ~= nil then
    cfg.loop = opts.loop
  end
  local argv, native_loop, err = M.command(track.path, cfg)
  if not argv then
    return nil, err
  end
  M.stop()
  local stderr = uv.new_pipe(false)
  ---@type lofi.PlayerProcess
  local proc = {
    pid = -1,
    track = track,
    argv = argv,
    paused = false,
    stopping = false,
    loop = cfg.loop and not native_loop,
  } --[[@as lofi.PlayerProcess]]
  local handle, pid_or_err = uv.spawn(
    argv[1],
    {
      args = vim.list_slice(argv, 2),
      stdio = { nil, nil, stderr },
      hide = true,
    },
    vim.schedule_wrap(function(code, signal)
      on_exit(proc, code, signal)
    end)
  )
  if not handle then
    stderr:close()
    return nil,
      errors.new(
        errors.client.PLAYER_NOT_FOUND,
        string.format("cannot start %s: %s", argv[1], tostring(pid_or_err))
      )
  end
  proc.handle = handle
  proc.pid = pid_or_err --[[@as integer]]
  stderr:read_start(vim.schedule_wrap(function(_, chunk)
    if chunk then
      log.debug("player: %s", vim.trim(chunk))
    elseif not stderr:is_closing() then
      stderr:close()
    end
  end))
  current = proc
  log.info("player pid %d: %s", proc.pid, table.concat(argv, " "))
  return proc.pid, nil
end

--- Stop playback: SIGTERM to the player process (SIGKILL if it is still there after 1 s).
---@return boolean stopped something was playing
function M.stop()
  local proc = current
  if not proc then
    return false
  end
  current = nil
  proc.stopping = true
  if proc.handle:is_closing() then
    return true
  end
  if proc.paused then
    proc.handle:kill("sigcont")
  end
  proc.handle:kill("sigterm")
  vim.defer_fn(function()
    if not proc.handle:is_closing() then
      proc.handle:kill("sigkill")
    end
  end, 1000)
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
    current.handle:kill("sigstop")
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
    current.handle:kill("sigcont")
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
