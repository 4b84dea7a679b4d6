--- The daemon: where it is and its command line, one running per editor (started through
--- `lofi.process`), stderr to the log, crash backoff, shutdown.
---
--- One daemon per editor, spawned on first use. Only the process this module spawned is ever
--- signalled (through its own libuv handle). After a crash the next use starts a new daemon,
--- waiting a backoff that doubles with each quick crash and is capped.
local config = require("lofi.config")
local errors = require("lofi.errors")
local log = require("lofi.log")
local paths = require("lofi.paths")
local process = require("lofi.process")

local uv = vim.uv

local M = {}

--- Time after which a daemon that exits no longer counts as a quick crash.
local STABLE_MS = 60000
--- How long to wait for the daemon's output to drain after it exited.
local DRAIN_MS = 1000
local STDERR_TAIL_CHARS = 4000

--- The restart delay after `crashes` quick crashes in a row: 0 for none, then `base`,
--- `2 * base`, `4 * base`, ... capped at `cap`.
---@param crashes integer
---@param base integer
---@param cap integer
---@return integer milliseconds
function M.backoff_ms(crashes, base, cap)
  if crashes <= 0 then
    return 0
  end
  return math.min(base * 2 ^ (crashes - 1), cap)
end

---@return string root of the plugin (the folder holding lua/ and plugin/)
function M.plugin_root()
  local source = debug.getinfo(1, "S").source:sub(2)
  return vim.fn.fnamemodify(source, ":p:h:h:h")
end

--- Find the `lofi-daemon` executable: the one in the plugin's `.venv`, then `PATH`.
---@param root? string plugin root (default: this plugin's)
---@return string? path
---@return string[] tried where it looked
function M.find_executable(root)
  root = root or M.plugin_root()
  local candidates = {
    vim.fs.joinpath(root, ".venv", "bin", "lofi-daemon"),
    vim.fs.joinpath(root, ".venv", "Scripts", "lofi-daemon.exe"),
  }
  for _, path in ipairs(candidates) do
    if vim.fn.executable(path) == 1 then
      return path, candidates
    end
  end
  local tried = vim.list_extend(vim.deepcopy(candidates), { "lofi-daemon on PATH" })
  local on_path = vim.fn.exepath("lofi-daemon")
  if on_path ~= "" then
    return on_path, tried
  end
  return nil, tried
end

--- The full daemon command line for a configuration.
---@param cfg lofi.Config
---@return string[]? argv
---@return lofi.Error? err
function M.command(cfg)
  local d = cfg.daemon
  local argv
  if d.cmd then
    argv = vim.deepcopy(d.cmd)
    if vim.fn.executable(argv[1]) ~= 1 then
      return nil,
        errors.new(
          errors.client.DAEMON_SPAWN_FAILED,
          string.format("daemon.cmd[1] %q is not an executable", argv[1])
        )
    end
  elseif type(d.remote) == "string" then
    argv = { "ssh", d.remote, "lofi-daemon" } -- `:help lofi-remote`
  else
    local path, tried = M.find_executable()
    if not path then
      return nil,
        errors.new(
          errors.client.DAEMON_SPAWN_FAILED,
          "lofi-daemon was not found (looked at " .. table.concat(tried, ", ") .. ")"
        )
    end
    argv = { path }
  end
  if argv[#argv] ~= "serve" then -- {"ssh", "gpu-box", "lofi-daemon", "serve"} names it already
    table.insert(argv, "serve")
  end
  if d.models_dir then
    vim.list_extend(argv, { "--models", paths.expand(d.models_dir) })
  end
  if d.cache_dir then
    vim.list_extend(argv, { "--cache-dir", paths.expand(d.cache_dir) })
  end
  if d.log_file ~= false and not (d.remote and d.log_file == nil) then -- remote: its default
    vim.list_extend(argv, { "--log-file", paths.expand(d.log_file or log.daemon_path()) })
  end
  return vim.list_extend(argv, d.args or {}), nil
end

---@class lofi.Daemon
---@field pid integer
---@field cmd string[]
---@field process lofi.Process
---@field started_ms integer
---@field stopping boolean the exit was asked for by the plugin
---@field exited boolean the process has ended and every handle is closed
---@field exit_code? integer
---@field exit_signal? integer
---@field stderr_tail string
---@field log_path string
---@field rotate_log boolean the plugin rotates the log (the daemon does when it writes there)
---@field on_done fun()[]

---@class lofi.ClientListeners
---@field line? fun(daemon: lofi.Daemon, line: string)
---@field exit? fun(daemon: lofi.Daemon)

local state = {
  ---@type lofi.Daemon?
  daemon = nil,
  crashes = 0,
  ---@type integer?
  last_exit_ms = nil,
  ---@type fun(err: lofi.Error?, daemon: lofi.Daemon?)[]
  waiting = {},
  ---@type uv.uv_timer_t?
  timer = nil,
  ---@type lofi.ClientListeners
  listeners = {},
}

--- Register the (single) line and exit listeners; the RPC layer does this.
---@param listeners lofi.ClientListeners
function M.set_listeners(listeners)
  state.listeners = listeners
end

--- The daemon's process has ended and its output is drained: count the crash, log, tell the
--- listeners, and start a new daemon for requests that wait.
---@param daemon lofi.Daemon
local function on_exit(daemon)
  local proc = daemon.process
  daemon.exited = true
  daemon.exit_code, daemon.exit_signal = proc.exit_code, proc.exit_signal
  local now = uv.now()
  if state.daemon == daemon then
    state.daemon = nil
  end
  if daemon.stopping then
    state.crashes = 0
  else
    local uptime = now - daemon.started_ms
    state.crashes = uptime >= STABLE_MS and 1 or state.crashes + 1
    state.last_exit_ms = now
  end
  local how = daemon.exit_signal
      and daemon.exit_signal ~= 0
      and string.format("signal %d", daemon.exit_signal)
    or string.format("code %d", daemon.exit_code or -1)
  local expected = daemon.stopping and "" or " unexpectedly"
  log.info("daemon pid %d exited (%s)%s", daemon.pid, how, expected)
  log.append(
    daemon.log_path,
    string.format("--- lofi.nvim: pid %d exited (%s)\n", daemon.pid, how),
    daemon.rotate_log
  )
  if state.listeners.exit then
    state.listeners.exit(daemon)
  end
  for _, fn in ipairs(daemon.on_done) do
    fn()
  end
  if #state.waiting > 0 and not state.timer then
    M.ensure(nil)
  end
end

--- A description of how the daemon ended, with the end of its stderr.
---@param daemon lofi.Daemon
---@return string
function M.exit_reason(daemon)
  local how
  if daemon.exit_signal and daemon.exit_signal ~= 0 then
    how = string.format("was killed by signal %d", daemon.exit_signal)
  else
    how = string.format("exited with code %d", daemon.exit_code or -1)
  end
  local text = string.format("the daemon (pid %d) %s", daemon.pid, how)
  local tail = vim.trim(daemon.stderr_tail or "")
  if tail ~= "" then
    local lines = vim.split(tail, "\n", { plain = true })
    text = text .. ": " .. table.concat(vim.list_slice(lines, math.max(1, #lines - 4)), " | ")
  end
  return text
end

--- Spawn a daemon now.
---@param cfg lofi.Config
---@return lofi.Daemon? daemon
---@return lofi.Error? err
local function spawn(cfg)
  local argv, err = M.command(cfg)
  if not argv then
    return nil, err
  end
  ---@type lofi.Daemon
  local daemon = {
    pid = -1,
    cmd = argv,
    started_ms = uv.now(),
    stopping = false,
    exited = false,
    stderr_tail = "",
    log_path = type(cfg.daemon.log_file) == "string" and paths.expand(cfg.daemon.log_file)
      or log.daemon_path(),
    rotate_log = cfg.daemon.log_file == false,
    on_done = {},
  } --[[@as lofi.Daemon]]
  local proc, spawn_err = process.spawn(argv, {
    env = cfg.daemon.env,
    stdin = true,
    on_stdout = function(line)
      if state.listeners.line then
        state.listeners.line(daemon, line)
      end
    end,
    on_stderr = function(chunk)
      log.append(daemon.log_path, chunk, daemon.rotate_log)
      daemon.stderr_tail = (daemon.stderr_tail .. chunk):sub(-STDERR_TAIL_CHARS)
    end,
    on_exit = function()
      on_exit(daemon)
    end,
    drain_ms = DRAIN_MS,
  })
  if not proc then
    return nil,
      errors.new(
        errors.client.DAEMON_SPAWN_FAILED,
        string.format("cannot start %s: %s", argv[1], tostring(spawn_err))
      )
  end
  daemon.process = proc
  daemon.pid = proc.pid
  log.info("daemon pid %d started: %s", daemon.pid, table.concat(argv, " "))
  log.append(
    daemon.log_path,
    string.format(
      "--- lofi.nvim: %s started pid %d: %s\n",
      os.date("%Y-%m-%d %H:%M:%S"),
      daemon.pid,
      table.concat(argv, " ")
    ),
    daemon.rotate_log
  )
  return daemon, nil
end

---@return lofi.Daemon? daemon the running daemon, if any (not one that is stopping)
function M.current()
  local daemon = state.daemon
  if daemon and not daemon.stopping and daemon.process:is_alive() then
    return daemon
  end
  return nil
end

---@return integer? pid of the running daemon
function M.pid()
  local daemon = M.current()
  return daemon and daemon.pid or nil
end

local function start_waiting()
  state.timer = nil
  local waiting = state.waiting
  state.waiting = {}
  local daemon, err = spawn(config.get())
  if daemon then
    state.daemon = daemon
  end
  for _, cb in ipairs(waiting) do
    cb(err, daemon)
  end
end

--- Call `cb(err, daemon)` with a running daemon, spawning one if needed (after the crash
--- backoff, or once a daemon that is shutting down has exited). `cb` may run synchronously.
---@param cb? fun(err: lofi.Error?, daemon: lofi.Daemon?)
function M.ensure(cb)
  local running = M.current()
  if running then
    if cb then
      cb(nil, running)
    end
    return
  end
  if cb then
    table.insert(state.waiting, cb)
  end
  if #state.waiting == 0 or state.timer or (state.daemon and not state.daemon.exited) then
    return
  end
  local d = config.get().daemon
  local delay = M.backoff_ms(state.crashes, d.backoff_ms, d.max_backoff_ms)
  delay = delay - (uv.now() - (state.last_exit_ms or 0))
  if delay <= 0 then
    start_waiting()
    return
  end
  log.info("restarting the daemon in %d ms (crash %d)", delay, state.crashes)
  local timer = assert(uv.new_timer())
  state.timer = timer
  timer:start(
    delay,
    0,
    vim.schedule_wrap(function()
      if not timer:is_closing() then
        timer:close()
      end
      start_waiting()
    end)
  )
end

--- Write raw bytes to the daemon's stdin.
---@param daemon lofi.Daemon
---@param data string
---@return boolean ok
function M.write(daemon, data)
  return daemon.process:write(data)
end

--- Stop a daemon in stages: close its stdin (the daemon exits at end of input), SIGTERM after
--- half of `timeout_ms`, SIGKILL after `timeout_ms`. Only this process is signalled.
---@param daemon lofi.Daemon
---@param timeout_ms integer
---@param on_done? fun() called once the process has exited
function M.stop(daemon, timeout_ms, on_done)
  if on_done then
    if daemon.exited then
      on_done()
      return
    end
    table.insert(daemon.on_done, on_done)
  end
  if daemon.stopping or daemon.exited then
    return
  end
  daemon.stopping = true
  daemon.process:close_stdin()
  local half = math.floor(timeout_ms / 2)
  vim.defer_fn(function()
    if daemon.process:is_alive() then
      log.info("sending sigterm to daemon pid %d", daemon.pid)
      daemon.process:terminate(timeout_ms - half)
    end
  end, half)
end

--- Wait (blocking, bounded) until `daemon` has exited.
---@param daemon lofi.Daemon
---@param timeout_ms integer
---@return boolean exited
function M.wait(daemon, timeout_ms)
  return vim.wait(timeout_ms, function()
    return daemon.exited
  end, 10) and true or false
end

--- Forget crash history and any pending restart (tests and `setup()`).
function M.reset_backoff()
  state.crashes = 0
  state.last_exit_ms = nil
end

return M
