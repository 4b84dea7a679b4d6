--- The daemon process: spawn, newline framing, stderr to the log, crash backoff, shutdown.
---
--- One daemon per editor, spawned on first use. Only the process this module spawned is ever
--- signalled (through its own libuv handle). After a crash the next use starts a new daemon,
--- waiting a backoff that doubles with each quick crash and is capped.
local errors = require("lofi.errors")
local log = require("lofi.log")

local uv = vim.uv

local M = {}

--- Time after which a daemon that exits no longer counts as a quick crash.
local STABLE_MS = 60000
--- How long to wait for the daemon's stdout to drain after it exited.
local DRAIN_MS = 1000
local STDERR_TAIL_CHARS = 4000

--- Split a byte stream into lines. Returns a function to feed chunks to; a line is delivered
--- (without its "\n" or a trailing "\r") once its newline has arrived, so a line split across
--- chunks is joined and a partial line waits for the rest. Linear in the input size.
---@param on_line fun(line: string)
---@return fun(chunk: string?) feed; nil means end of stream (a last unterminated line is
---   delivered then)
function M.line_reader(on_line)
  local parts = {}
  return function(chunk)
    if chunk == nil then
      if #parts > 0 then
        local rest = table.concat(parts)
        parts = {}
        on_line((rest:gsub("\r$", "")))
      end
      return
    end
    local start = 1
    while true do
      local nl = chunk:find("\n", start, true)
      if not nl then
        break
      end
      parts[#parts + 1] = chunk:sub(start, nl - 1)
      local line = table.concat(parts)
      parts = {}
      on_line((line:gsub("\r$", "")))
      start = nl + 1
    end
    if start <= #chunk then
      parts[#parts + 1] = chunk:sub(start)
    end
  end
end

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
  table.insert(argv, "serve")
  if d.models_dir then
    vim.list_extend(argv, { "--models", vim.fn.expand(d.models_dir) })
  end
  if d.cache_dir then
    vim.list_extend(argv, { "--cache-dir", vim.fn.expand(d.cache_dir) })
  end
  if d.log_file ~= false then
    vim.list_extend(argv, { "--log-file", vim.fn.expand(d.log_file or log.daemon_path()) })
  end
  return vim.list_extend(argv, d.args or {}), nil
end

---@param overrides? table<string, string>
---@return string[]? env in "NAME=value" form, nil to inherit the editor's
local function build_env(overrides)
  if not overrides then
    return nil
  end
  local env = vim.tbl_extend("force", vim.fn.environ(), overrides)
  local list = {}
  for name, value in pairs(env) do
    list[#list + 1] = name .. "=" .. value
  end
  return list
end

---@class lofi.Process
---@field pid integer
---@field cmd string[]
---@field handle uv.uv_process_t
---@field stdin uv.uv_pipe_t
---@field stdout uv.uv_pipe_t
---@field stderr uv.uv_pipe_t
---@field started_ms integer
---@field stopping boolean the exit was asked for by the plugin
---@field exited boolean the process has ended and every handle is closed
---@field exit_code? integer
---@field exit_signal? integer
---@field stderr_tail string
---@field log_path string
---@field rotate_log boolean the plugin rotates the log (the daemon does when it writes there)
---@field pending_exit boolean
---@field stdout_done boolean
---@field stderr_done boolean
---@field on_done fun()[]

---@class lofi.ClientListeners
---@field line? fun(proc: lofi.Process, line: string)
---@field exit? fun(proc: lofi.Process)

local state = {
  ---@type lofi.Process?
  proc = nil,
  crashes = 0,
  ---@type integer?
  last_exit_ms = nil,
  ---@type fun(err: lofi.Error?, proc: lofi.Process?)[]
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

---@param handle uv.uv_handle_t?
local function close_handle(handle)
  if handle and not handle:is_closing() then
    handle:close()
  end
end

---@param proc lofi.Process
local function finish(proc)
  if proc.exited or not proc.pending_exit then
    return
  end
  proc.exited = true
  close_handle(proc.stdin)
  close_handle(proc.stdout)
  close_handle(proc.stderr)
  close_handle(proc.handle)
  local now = uv.now()
  if state.proc == proc then
    state.proc = nil
  end
  if proc.stopping then
    state.crashes = 0
  else
    local uptime = now - proc.started_ms
    state.crashes = uptime >= STABLE_MS and 1 or state.crashes + 1
    state.last_exit_ms = now
  end
  local how = proc.exit_signal
      and proc.exit_signal ~= 0
      and string.format("signal %d", proc.exit_signal)
    or string.format("code %d", proc.exit_code or -1)
  log.info("daemon pid %d exited (%s)%s", proc.pid, how, proc.stopping and "" or " unexpectedly")
  log.append(
    proc.log_path,
    string.format("--- lofi.nvim: pid %d exited (%s)\n", proc.pid, how),
    proc.rotate_log
  )
  if state.listeners.exit then
    state.listeners.exit(proc)
  end
  for _, fn in ipairs(proc.on_done) do
    fn()
  end
  if #state.waiting > 0 and not state.timer then
    M.ensure(nil)
  end
end

--- A description of how the process ended, with the end of its stderr.
---@param proc lofi.Process
---@return string
function M.exit_reason(proc)
  local how
  if proc.exit_signal and proc.exit_signal ~= 0 then
    how = string.format("was killed by signal %d", proc.exit_signal)
  else
    how = string.format("exited with code %d", proc.exit_code or -1)
  end
  local text = string.format("the daemon (pid %d) %s", proc.pid, how)
  local tail = vim.trim(proc.stderr_tail or "")
  if tail ~= "" then
    local lines = vim.split(tail, "\n", { plain = true })
    text = text .. ": " .. table.concat(vim.list_slice(lines, math.max(1, #lines - 4)), " | ")
  end
  return text
end

--- Spawn a daemon now.
---@param cfg lofi.Config
---@return lofi.Process? proc
---@return lofi.Error? err
local function spawn(cfg)
  local argv, err = M.command(cfg)
  if not argv then
    return nil, err
  end
  local stdin, stdout, stderr = uv.new_pipe(false), uv.new_pipe(false), uv.new_pipe(false)
  ---@type lofi.Process
  local proc = {
    pid = -1,
    cmd = argv,
    started_ms = uv.now(),
    stopping = false,
    exited = false,
    pending_exit = false,
    stdout_done = false,
    stderr_done = false,
    stderr_tail = "",
    log_path = type(cfg.daemon.log_file) == "string" and vim.fn.expand(cfg.daemon.log_file)
      or log.daemon_path(),
    rotate_log = cfg.daemon.log_file == false,
    on_done = {},
  } --[[@as lofi.Process]]
  proc.stdin, proc.stdout, proc.stderr = stdin, stdout, stderr
  local handle, pid_or_err = uv.spawn(
    argv[1],
    {
      args = vim.list_slice(argv, 2),
      stdio = { stdin, stdout, stderr },
      env = build_env(cfg.daemon.env),
      hide = true,
    },
    vim.schedule_wrap(function(code, signal)
      proc.exit_code, proc.exit_signal = code, signal
      proc.pending_exit = true
      if proc.stdout_done and proc.stderr_done then
        finish(proc)
      else
        vim.defer_fn(function()
          finish(proc)
        end, DRAIN_MS)
      end
    end)
  )
  if not handle then
    close_handle(stdin)
    close_handle(stdout)
    close_handle(stderr)
    return nil,
      errors.new(
        errors.client.DAEMON_SPAWN_FAILED,
        string.format("cannot start %s: %s", argv[1], tostring(pid_or_err))
      )
  end
  proc.handle = handle
  proc.pid = pid_or_err --[[@as integer]]
  log.info("daemon pid %d started: %s", proc.pid, table.concat(argv, " "))
  log.append(
    proc.log_path,
    string.format(
      "--- lofi.nvim: %s started pid %d: %s\n",
      os.date("%Y-%m-%d %H:%M:%S"),
      proc.pid,
      table.concat(argv, " ")
    ),
    proc.rotate_log
  )

  local feed = M.line_reader(function(line)
    if state.listeners.line then
      state.listeners.line(proc, line)
    end
  end)
  stdout:read_start(vim.schedule_wrap(function(read_err, chunk)
    if read_err then
      log.warn("daemon stdout: %s", read_err)
    end
    if chunk then
      feed(chunk)
    else
      feed(nil)
      proc.stdout_done = true
      close_handle(stdout)
      if proc.stderr_done then
        finish(proc)
      end
    end
  end))
  stderr:read_start(vim.schedule_wrap(function(_, chunk)
    if chunk then
      log.append(proc.log_path, chunk, proc.rotate_log)
      proc.stderr_tail = (proc.stderr_tail .. chunk):sub(-STDERR_TAIL_CHARS)
    else
      proc.stderr_done = true
      close_handle(stderr)
      if proc.stdout_done then
        finish(proc)
      end
    end
  end))
  return proc, nil
end

---@return lofi.Process? the running daemon, if any
function M.current()
  local proc = state.proc
  if proc and not proc.exited and not proc.stopping and not proc.pending_exit then
    return proc
  end
  return nil
end

---@return integer? pid of the running daemon
function M.pid()
  local proc = M.current()
  return proc and proc.pid or nil
end

local function start_waiting()
  state.timer = nil
  local waiting = state.waiting
  state.waiting = {}
  local proc, err = spawn(require("lofi.config").get())
  if proc then
    state.proc = proc
  end
  for _, cb in ipairs(waiting) do
    cb(err, proc)
  end
end

--- Call `cb(err, proc)` with a running daemon, spawning one if needed (after the crash
--- backoff, or once a daemon that is shutting down has exited). `cb` may run synchronously.
---@param cb? fun(err: lofi.Error?, proc: lofi.Process?)
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
  if #state.waiting == 0 or state.timer or (state.proc and not state.proc.exited) then
    return
  end
  local d = require("lofi.config").get().daemon
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
      close_handle(timer)
      start_waiting()
    end)
  )
end

--- Write raw bytes to the daemon's stdin.
---@param proc lofi.Process
---@param data string
---@return boolean ok
function M.write(proc, data)
  if proc.exited or proc.stdin:is_closing() then
    return false
  end
  local ok = pcall(proc.stdin.write, proc.stdin, data)
  return ok
end

--- Stop a daemon in stages: close its stdin (the daemon exits at end of input), SIGTERM after
--- half of `timeout_ms`, SIGKILL after `timeout_ms`. Only this process is signalled.
---@param proc lofi.Process
---@param timeout_ms integer
---@param on_done? fun() called once the process has exited
function M.stop(proc, timeout_ms, on_done)
  if on_done then
    if proc.exited then
      on_done()
      return
    end
    table.insert(proc.on_done, on_done)
  end
  if proc.stopping or proc.exited then
    return
  end
  proc.stopping = true
  if not proc.stdin:is_closing() then
    proc.stdin:shutdown(vim.schedule_wrap(function()
      close_handle(proc.stdin)
    end))
  end
  local function signal(name)
    return function()
      if not proc.exited and not proc.pending_exit and not proc.handle:is_closing() then
        log.info("sending %s to daemon pid %d", name, proc.pid)
        proc.handle:kill(name)
      end
    end
  end
  vim.defer_fn(signal("sigterm"), math.floor(timeout_ms / 2))
  vim.defer_fn(signal("sigkill"), timeout_ms)
end

--- Wait (blocking, bounded) until `proc` has exited.
---@param proc lofi.Process
---@param timeout_ms integer
---@return boolean exited
function M.wait(proc, timeout_ms)
  return vim.wait(timeout_ms, function()
    return proc.exited
  end, 10) and true or false
end

--- Forget crash history and any pending restart (tests and `setup()`).
function M.reset_backoff()
  state.crashes = 0
  state.last_exit_ms = nil
end

return M
