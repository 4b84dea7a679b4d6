--- Playback through an external player. The plugin owns at most one player process (started
--- with `lofi.process`) and only ever signals that process (through its own libuv handle).
---
--- Pause and resume send SIGSTOP and SIGCONT to the player process (POSIX systems only): the
--- player freezes where it is and continues from there. Looping uses the player's own loop
--- option where it has one (mpv, ffplay) and otherwise starts the player again when the track
--- ends.
---
--- The file is passed as an absolute path, after `--` for players that take it, so a file
--- named like an option (`-x.wav`) is never read as one. A player that fails gets its last
--- stderr line shown and logged.
local config = require("lofi.config")
local errors = require("lofi.errors")
local log = require("lofi.log")
local paths = require("lofi.paths")
local process = require("lofi.process")
local user = require("lofi.user")

--- How long a stopped player gets between SIGTERM and SIGKILL.
local STOP_GRACE_MS = 1000
--- How long to wait, after the player ended, for the rest of its stderr.
local DRAIN_MS = 500
--- How much of the player's stderr is kept for the message when it fails.
local STDERR_TAIL_CHARS = 2000

local M = {}

--- How long the player gets between SIGTERM and SIGKILL when Neovim exits (`stop({sync =
--- true})` blocks at most this long).
M.EXIT_GRACE_MS = 500

---@class lofi.PlayerSpec
---@field name string executable
---@field args string[] arguments before the file
---@field loop_args? string[] arguments that make the player repeat the file forever
---@field end_of_options boolean it takes `--` before the file (its arguments after `--` are
---   never options)

--- Known players, in the order they are tried.
---@type lofi.PlayerSpec[]
M.known = {
  {
    name = "mpv",
    -- Errors only, on stderr (for the failure message); never read the terminal.
    args = { "--no-video", "--input-terminal=no", "--msg-level=all=error" },
    loop_args = { "--loop-file=inf" },
    end_of_options = true,
  },
  {
    name = "ffplay",
    args = { "-nodisp", "-loglevel", "error" },
    loop_args = { "-loop", "0" },
    end_of_options = true, -- FFmpeg's option parser stops at "--"
  },
  { name = "pw-play", args = {}, end_of_options = true }, -- getopt_long
  { name = "paplay", args = {}, end_of_options = true }, -- getopt_long
  { name = "afplay", args = {}, end_of_options = false }, -- no "--"; the path is absolute
  { name = "aplay", args = { "-q" }, end_of_options = true }, -- getopt_long
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
  if spec.end_of_options then
    table.insert(argv, "--")
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
---@field stderr string the end of the player's stderr

---@type lofi.Playback? what plays now
local current = nil
---@type lofi.Track? what was played last (it may have ended)
local last_played = nil

---@param playback lofi.Playback
local function on_exit(playback)
  local code, signal = playback.process.exit_code or -1, playback.process.exit_signal or 0
  log.debug("player pid %d exited (code %d, signal %d)", playback.pid, code, signal)
  if current ~= playback then
    return
  end
  current = nil
  require("lofi.redraw").statusline()
  if playback.stopping then
    return
  end
  if code ~= 0 then
    local said = M.last_line(playback.stderr)
    local message = string.format("the player %s exited with code %d", playback.argv[1], code)
    if said then
      message = message .. ": " .. said
    end
    log.warn("%s", message)
    user.notify(message, vim.log.levels.WARN)
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
  -- Absolute: a relative name such as "-x.wav" must not look like an option to any player.
  local argv, native_loop, err = M.command(paths.absolute(track.path), cfg)
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
    stderr = "",
  } --[[@as lofi.Playback]]
  local proc, spawn_err = process.spawn(argv, {
    on_stderr = function(chunk)
      log.debug("player: %s", vim.trim(chunk))
      playback.stderr = (playback.stderr .. chunk):sub(-STDERR_TAIL_CHARS)
    end,
    on_exit = function()
      on_exit(playback)
    end,
    -- Only a grandchild holding stderr open makes this wait the full time.
    drain_ms = DRAIN_MS,
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
  last_played = track
  log.info("player pid %d: %s", playback.pid, table.concat(argv, " "))
  return playback.pid, nil
end

--- The last non-empty line of a player's output, trimmed (nil when there is none).
---@param text string
---@return string?
function M.last_line(text)
  local last = nil
  for line in vim.gsplit(text, "\n", { plain = true }) do
    line = vim.trim(line:gsub("\r", ""))
    if line ~= "" then
      last = line
    end
  end
  return last
end

--- Stop playback: SIGTERM to the player process, then SIGKILL if it is still there after 1 s
--- (a timer). With `sync` (Neovim is exiting, when no timer would ever fire) it waits, blocking,
--- at most `M.EXIT_GRACE_MS` and sends SIGKILL before returning.
---@param opts? {sync?: boolean}
---@return boolean stopped something was playing
function M.stop(opts)
  local playback = current
  if not playback then
    return false
  end
  current = nil
  playback.stopping = true
  if playback.paused then
    playback.process:kill("sigcont")
  end
  if opts and opts.sync then
    playback.process:terminate_sync(M.EXIT_GRACE_MS)
  else
    playback.process:terminate(STOP_GRACE_MS)
  end
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

--- Whether "no player" was already reported this session.
local warned_no_player = false

--- Play a finished track (`player.autoplay`). Never shows a message itself: returns why the
--- track was not played, for the "ready" message, or nil. No installed player is reported once
--- per session (`:checkhealth lofi` says what to install); other failures each time.
---@param track lofi.Track
---@return string? not_played
function M.autoplay(track)
  local no_player = not config.get().player.cmd and M.detect() == nil
  local _, err = M.play(track)
  if not err then
    return nil
  end
  log.warn("autoplay of %s: %s", tostring(track.path), tostring(err))
  if no_player then
    if warned_no_player then
      return nil
    end
    warned_no_player = true
    return "not played: no audio player found, see :checkhealth lofi"
  end
  return "not played: " .. err.message
end

--- The end of the "ready" message: the file, and why it was not played.
---@param track lofi.Track
---@param not_played? string from `M.autoplay`
---@return string
function M.ready_suffix(track, not_played)
  local text = type(track.path) == "string" and (": " .. track.path) or ""
  return not_played and string.format("%s (%s)", text, not_played) or text
end

---@return {pid: integer, track: lofi.Track, paused: boolean, argv: string[]}? playing what
---   plays now
function M.current()
  if not current then
    return nil
  end
  return { pid = current.pid, track = current.track, paused = current.paused, argv = current.argv }
end

--- The track played last in this session, playing or not (a track table, or `{path = ...}`
--- for a file).
---@return lofi.Track?
function M.last()
  return last_played
end

return M
