-- lofi.process, the one process helper of the daemon client and the player (real processes,
-- no daemon).
local t = require("lofi_test")

---@type lofi.Process[] processes to kill after each test, in case it failed midway
local spawned = {}

--- Spawn `argv` and record everything the helper reports.
---@param argv string[]
---@param opts? lofi.ProcessOpts
---@return lofi.Process? proc
---@return {lines: string[], stderr: string, exits: integer, fast: boolean, after_exit: integer}
local function spawn(argv, opts)
  local seen = { lines = {}, stderr = "", exits = 0, fast = false, after_exit = 0 }
  local function note()
    -- Every callback must run on the main loop, where any API may be used.
    seen.fast = seen.fast or vim.in_fast_event()
    vim.api.nvim_get_current_buf()
    if seen.exits > 0 then
      seen.after_exit = seen.after_exit + 1
    end
  end
  local proc = require("lofi.process").spawn(
    argv,
    vim.tbl_extend("force", {
      on_stdout = function(line)
        note()
        table.insert(seen.lines, line)
      end,
      on_stderr = function(chunk)
        note()
        seen.stderr = seen.stderr .. chunk
      end,
      on_exit = function()
        note()
        seen.exits = seen.exits + 1
      end,
    }, opts or {})
  )
  table.insert(spawned, proc)
  return proc, seen
end

---@param seen {exits: integer}
---@param timeout_ms? integer
local function wait_exit(seen, timeout_ms)
  t.wait(timeout_ms or 5000, function()
    return seen.exits > 0
  end, "on_exit")
  t.sleep(100)
  t.eq(seen.exits, 1, "on_exit ran once")
end

t.describe("process", function()
  t.after_each(function()
    for _, proc in ipairs(spawned) do
      proc:kill("sigkill")
    end
    spawned = {}
  end)

  t.it("streams stdout lines and stderr, then reports the exit once, on the main loop", function()
    local script = "printf 'one\\ntw'; sleep 0.1; printf 'o\\r\\nthree'; printf 'oops' >&2; exit 3"
    local proc, seen = spawn({ "sh", "-c", script })
    t.ok(proc, "spawned")
    ---@cast proc lofi.Process
    t.ok(proc.pid > 0, "a pid")
    t.ok(proc:is_alive())
    wait_exit(seen)
    t.eq(seen.lines, { "one", "two", "three" }, "split lines joined, the last one delivered")
    t.eq(seen.stderr, "oops")
    t.eq(proc.exit_code, 3)
    t.eq(proc.exit_signal, 0)
    t.ok(proc.exited and proc.closed, "ended and closed")
    t.ok(not proc:is_alive())
    t.eq(seen.fast, false, "no callback ran in a fast event")
    t.eq(seen.after_exit, 0, "nothing after on_exit")
    t.eq(proc:kill("sigterm"), false, "an ended process is not signalled")
    t.eq(proc:write("x"), false, "an ended process takes no input")
  end)

  t.it("writes to stdin and closes it", function()
    local proc, seen = spawn({ "cat" }, { stdin = true })
    ---@cast proc lofi.Process
    t.ok(proc:write("first\nsec"))
    t.ok(proc:write("ond\n"))
    proc:close_stdin()
    wait_exit(seen)
    t.eq(seen.lines, { "first", "second" })
    t.eq(proc.exit_code, 0, "cat saw the end of its input")
  end)

  t.it("has no stdin unless asked", function()
    local proc, seen = spawn({ "sh", "-c", "exit 0" })
    ---@cast proc lofi.Process
    t.eq(proc:write("x"), false)
    wait_exit(seen)
  end)

  t.it("passes extra environment variables over the editor's", function()
    local _, seen = spawn({ "sh", "-c", 'echo "$LOFI_PROCESS_TEST:$HOME"' }, {
      env = { LOFI_PROCESS_TEST = "yes" },
    })
    wait_exit(seen)
    t.eq(seen.lines, { "yes:" .. vim.env.HOME })
  end)

  t.it("terminates with SIGTERM", function()
    local proc, seen = spawn({ "sleep", "30" })
    ---@cast proc lofi.Process
    t.ok(proc:terminate(5000))
    wait_exit(seen, 3000)
    t.eq(proc.exit_signal, 15)
    t.ok(not t.alive(proc.pid))
  end)

  t.it("sends SIGKILL after the grace when SIGTERM is ignored", function()
    local script = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
    local proc, seen = spawn({ "sh", "-c", script })
    ---@cast proc lofi.Process
    t.wait(3000, function()
      return seen.lines[1] == "ready"
    end, "the trap to be set")
    local started = vim.uv.now()
    t.ok(proc:terminate(300))
    t.sleep(150)
    t.ok(proc:is_alive(), "SIGTERM was ignored")
    wait_exit(seen, 3000)
    t.eq(proc.exit_signal, 9)
    t.ok(vim.uv.now() - started >= 300, "not before the grace")
  end)

  t.it("terminate_sync: ends with SIGTERM without waiting the whole grace", function()
    local proc, seen = spawn({ "sleep", "30" })
    ---@cast proc lofi.Process
    t.eq(proc:terminate_sync(30000), true, "ended by SIGTERM")
    t.ok(proc.exited, "already ended when terminate_sync returns")
    t.eq(proc.exit_signal, 15)
    wait_exit(seen, 3000)
  end)

  t.it("terminate_sync: SIGKILL before it returns when SIGTERM is ignored", function()
    local script = "trap '' TERM; echo ready; while :; do sleep 0.05; done"
    local proc, seen = spawn({ "sh", "-c", script })
    ---@cast proc lofi.Process
    t.wait(3000, function()
      return seen.lines[1] == "ready"
    end, "the trap to be set")
    t.eq(proc:terminate_sync(200), false, "SIGTERM was ignored")
    -- SIGKILL was sent before terminate_sync returned: no timer has to fire for the exit.
    wait_exit(seen, 3000)
    t.eq(proc.exit_signal, 9)
    t.eq(proc:terminate_sync(200), false, "nothing left to stop")
  end)

  t.it("reports the exit within drain_ms while a grandchild keeps stdout open", function()
    local proc, seen = spawn({ "sh", "-c", "sleep 30 & echo $!" }, { drain_ms = 200 })
    ---@cast proc lofi.Process
    wait_exit(seen, 2000)
    local grandchild = tonumber(seen.lines[1])
    local held = grandchild and t.alive(grandchild)
    if grandchild then
      vim.uv.kill(grandchild, "sigkill")
    end
    t.ok(held, "the grandchild still held the pipe")
    t.eq(proc.exit_code, 0)
  end)

  t.it("returns an error, never raises, when the program cannot start", function()
    local proc, err = require("lofi.process").spawn({ "/nonexistent/program" }, {
      stdin = true,
      on_stdout = function() end,
    })
    t.eq(proc, nil)
    t.contains(err, "ENOENT")
  end)
end)
