-- A small test runner for `nvim -l`:
--
--   nvim -l tests/lua/runner.lua [spec files...]
--
-- Spec files get the test API with `local t = require("lofi_test")`. Every test runs with a
-- fresh plugin: afterwards the daemon and player are stopped and every `lofi.*` module is
-- unloaded. Prints one line per test, then "N passed, N failed"; exits non-zero on failure.
-- LOFI_TEST_FILTER=text runs only the tests whose full name contains `text`.

local uv = vim.uv
local root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h:h")
vim.opt.rtp:prepend(root)
vim.cmd.runtime("plugin/lofi.lua")

local t = {}
package.loaded["lofi_test"] = t

t.root = root

---@class lofi_test.Case
---@field name string
---@field fn fun()
---@field before fun()[]
---@field after fun()[]

---@type lofi_test.Case[]
local cases = {}
---@type {name: string, before: fun()[], after: fun()[]}[]
local stack = {}

local function current_hooks(kind)
  local hooks = {}
  for _, suite in ipairs(stack) do
    vim.list_extend(hooks, suite[kind])
  end
  return hooks
end

--- Group tests; groups nest.
---@param name string
---@param fn fun()
function t.describe(name, fn)
  table.insert(stack, { name = name, before = {}, after = {} })
  fn()
  table.remove(stack)
end

---@param name string
---@param fn fun()
function t.it(name, fn)
  local names = vim.tbl_map(function(suite)
    return suite.name
  end, stack)
  table.insert(names, name)
  table.insert(cases, {
    name = table.concat(names, " > "),
    fn = fn,
    before = current_hooks("before"),
    after = current_hooks("after"),
  })
end

---@param fn fun()
function t.before_each(fn)
  table.insert(stack[#stack].before, fn)
end

---@param fn fun()
function t.after_each(fn)
  table.insert(stack[#stack].after, fn)
end

-- Assertions ---------------------------------------------------------------------------------

---@param value any
---@return string
local function show(value)
  return vim.inspect(value, { newline = " ", indent = "" })
end

---@param msg? string
---@return string
local function prefix(msg)
  return msg and (msg .. ": ") or ""
end

function t.eq(actual, expected, msg)
  if not vim.deep_equal(actual, expected) then
    error(string.format("%sexpected %s, got %s", prefix(msg), show(expected), show(actual)), 2)
  end
end

function t.neq(actual, unexpected, msg)
  if vim.deep_equal(actual, unexpected) then
    error(string.format("%sdid not expect %s", prefix(msg), show(actual)), 2)
  end
end

function t.ok(value, msg)
  if not value then
    error(msg or "expected a true value", 2)
  end
end

--- `text` contains `needle` (plain text).
function t.contains(text, needle, msg)
  if type(text) ~= "string" or not text:find(needle, 1, true) then
    local text_shown, needle_shown = show(text), show(needle)
    error(string.format("%sexpected %s to contain %s", prefix(msg), text_shown, needle_shown), 2)
  end
end

--- `fn` raises an error whose message contains `needle`; returns the message.
function t.raises(fn, needle)
  local ok, err = pcall(fn)
  if ok then
    error("expected an error containing " .. show(needle), 2)
  end
  err = tostring(err)
  if needle and not err:find(needle, 1, true) then
    error(string.format("expected an error containing %s, got %s", show(needle), show(err)), 2)
  end
  return err
end

--- Wait (bounded) until `cond()` is true; fails the test with `what` on timeout.
---@param timeout_ms integer
---@param cond fun(): any
---@param what string
function t.wait(timeout_ms, cond, what)
  if not vim.wait(timeout_ms, cond, 20) then
    error(string.format("timed out after %d ms waiting for %s", timeout_ms, what), 2)
  end
end

--- Let the event loop run for `ms` milliseconds.
function t.sleep(ms)
  vim.wait(ms, function()
    return false
  end, 10)
end

-- Helpers -------------------------------------------------------------------------------------

--- An environment variable the suite needs.
---@param name string
---@return string
function t.env(name)
  local value = vim.env[name]
  if value == nil or value == "" then
    error(name .. " is not set (run the suite through tests/test_nvim.py)", 2)
  end
  return value
end

local tmp_count = 0

--- A new empty folder under the temporary test root.
---@return string
function t.tmpdir()
  tmp_count = tmp_count + 1
  local base = vim.env.LOFI_TEST_CACHE or vim.fn.tempname()
  local dir = vim.fs.joinpath(base, string.format("t%03d-%d", tmp_count, uv.getpid()))
  vim.fn.mkdir(dir, "p")
  return dir
end

--- The Python that runs the daemon.
---@return string
function t.python()
  local python = vim.env.LOFI_TEST_PYTHON
  if python and python ~= "" then
    return python
  end
  local venv = vim.fs.joinpath(root, ".venv", "bin", "python")
  return vim.fn.executable(venv) == 1 and venv or "python3"
end

--- Options for the real daemon with the tiny models, a fresh cache and no autoplay.
---@param overrides? table
---@return table
function t.config(overrides)
  local base = {
    daemon = {
      cmd = { t.python(), "-m", "lofi_daemon" },
      models_dir = t.env("LOFI_TEST_MODELS"),
      cache_dir = t.tmpdir(),
      request_timeout_ms = 30000,
      shutdown_timeout_ms = 3000,
      backoff_ms = 100,
    },
    player = { autoplay = false },
    notify = false,
    log = { level = "debug" },
  }
  return vim.tbl_deep_extend("force", base, overrides or {})
end

--- Capture vim.notify calls until the test ends.
---@return {msg: string, level: integer}[]
function t.capture_notify()
  local messages = {}
  vim.notify = function(msg, level)
    table.insert(messages, { msg = msg, level = level or vim.log.levels.INFO })
  end
  return messages
end

--- Messages joined, for `contains` checks.
function t.joined(messages)
  return table.concat(
    vim.tbl_map(function(m)
      return m.msg
    end, messages),
    "\n"
  )
end

--- True while a process with this pid exists (and is not a zombie).
---@param pid integer
---@return boolean
function t.alive(pid)
  if uv.kill(pid, 0) ~= 0 then
    return false
  end
  local stat = io.open("/proc/" .. pid .. "/stat", "r")
  if stat then
    local text = stat:read("*a")
    stat:close()
    return text:match("^%d+ %b() (%a)") ~= "Z"
  end
  return true
end

--- Autocmds fired for `User` patterns, recorded in order: {pattern, data}.
---@param patterns string[]
---@return {pattern: string, data: table}[]
function t.record_user_events(patterns)
  local seen = {}
  local group = vim.api.nvim_create_augroup("LofiTest", { clear = false })
  vim.api.nvim_create_autocmd("User", {
    group = group,
    pattern = patterns,
    callback = function(ev)
      table.insert(seen, { pattern = ev.match, data = ev.data })
    end,
  })
  return seen
end

-- Running -------------------------------------------------------------------------------------

local original_notify = vim.notify

local function reset()
  if package.loaded["lofi"] then
    pcall(package.loaded["lofi"].shutdown, 3000)
  end
  for name in pairs(package.loaded) do
    if name == "lofi" or name:match("^lofi%.") then
      package.loaded[name] = nil
    end
  end
  pcall(vim.api.nvim_del_augroup_by_name, "Lofi")
  pcall(vim.api.nvim_del_augroup_by_name, "LofiTest")
  vim.notify = original_notify
  vim.g.lofi_disable = nil
  pcall(vim.cmd, "silent! tabonly!")
  pcall(vim.cmd, "silent! only!")
  pcall(vim.cmd, "silent! %bwipeout!")
end

local function out(text)
  io.stdout:write(text, "\n")
  io.stdout:flush()
end

local files = {}
for i = 1, #_G.arg do
  table.insert(files, _G.arg[i])
end
if #files == 0 then
  files = vim.fn.glob(vim.fs.joinpath(root, "tests", "lua", "*_spec.lua"), false, true)
  table.sort(files)
end

local load_failures = 0
for _, file in ipairs(files) do
  local chunk, err = loadfile(file)
  if not chunk then
    out("FAIL load " .. file .. ": " .. tostring(err))
    load_failures = load_failures + 1
  else
    local ok, run_err = xpcall(chunk, debug.traceback)
    if not ok then
      out("FAIL load " .. file .. ": " .. tostring(run_err))
      load_failures = load_failures + 1
    end
  end
end

--- Names added to _G since `before` (the plugin must not create globals).
---@param before table<string, boolean>
---@return string[]
local function new_globals(before)
  local added = {}
  for name in pairs(_G) do
    if not before[name] then
      table.insert(added, tostring(name))
    end
  end
  table.sort(added)
  return added
end

local globals_before = {}
for name in pairs(_G) do
  globals_before[name] = true
end

local filter = vim.env.LOFI_TEST_FILTER
local passed, failed = 0, load_failures
for _, case in ipairs(cases) do
  if not filter or filter == "" or case.name:find(filter, 1, true) then
    local started = uv.hrtime()
    local ok, err = xpcall(function()
      for _, hook in ipairs(case.before) do
        hook()
      end
      case.fn()
    end, debug.traceback)
    for _, hook in ipairs(case.after) do
      local hook_ok, hook_err = xpcall(hook, debug.traceback)
      if ok and not hook_ok then
        ok, err = false, hook_err
      end
    end
    reset()
    local added = new_globals(globals_before)
    if ok and #added > 0 then
      ok, err = false, "new global variable(s): " .. table.concat(added, ", ")
    end
    for _, name in ipairs(added) do
      _G[name] = nil
    end
    local seconds = (uv.hrtime() - started) / 1e9
    if ok then
      passed = passed + 1
      out(string.format("ok    %s (%.1fs)", case.name, seconds))
    else
      failed = failed + 1
      out(string.format("FAIL  %s (%.1fs)\n%s", case.name, seconds, tostring(err)))
    end
  end
end

out(string.format("%d passed, %d failed", passed, failed))
os.exit(failed > 0 and 1 or 0)
