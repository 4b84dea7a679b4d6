-- Tests that need no daemon: framing, backoff, errors, options, events, UI pieces, commands,
-- module structure.
local t = require("lofi_test")

t.describe("framing", function()
  t.it("joins lines split at every byte and keeps partial lines", function()
    local process = require("lofi.process")
    local text = '{"a":1}\n{"b":"x\\ny"}\r\n\n{"c":[1,2,3]}\n{"tail":true}'
    for cut = 1, #text - 1 do
      local lines = {}
      local feed = process.line_reader(function(line)
        table.insert(lines, line)
      end)
      feed(text:sub(1, cut))
      feed(text:sub(cut + 1))
      t.eq(lines, { '{"a":1}', '{"b":"x\\ny"}', "", '{"c":[1,2,3]}' }, "cut at " .. cut)
      feed(nil)
      t.eq(lines[5], '{"tail":true}', "the unterminated last line at end of stream")
    end
  end)

  t.it("handles one byte per chunk and many lines per chunk", function()
    local process = require("lofi.process")
    local lines = {}
    local feed = process.line_reader(function(line)
      table.insert(lines, line)
    end)
    local text = string.rep("0123456789", 50) .. "\nshort\n"
    for i = 1, #text do
      feed(text:sub(i, i))
    end
    t.eq(#lines, 2)
    t.eq(#lines[1], 500)
    feed("a\nb\nc\n")
    t.eq(vim.list_slice(lines, 3), { "a", "b", "c" })
  end)

  t.it("backs off exponentially after quick crashes, capped", function()
    local client = require("lofi.client")
    local delays = {}
    for crashes = 0, 8 do
      table.insert(delays, client.backoff_ms(crashes, 500, 30000))
    end
    t.eq(delays, { 0, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000 })
  end)
end)

t.describe("errors", function()
  t.it("keeps client codes in their own range, apart from daemon codes", function()
    local errors = require("lofi.errors")
    local daemon_codes = {}
    for _, code in pairs(errors.daemon) do
      daemon_codes[code] = true
    end
    for name, code in pairs(errors.client) do
      t.ok(errors.is_client_code(code), name .. " is outside -32199..-32100")
      t.ok(not daemon_codes[code], name .. " collides with a daemon code")
      t.eq(errors.name(code), name)
    end
    for name, code in pairs(errors.daemon) do
      t.ok(not errors.is_client_code(code), name .. " is in the client range")
    end
  end)

  t.it("reads the daemon's error objects", function()
    local errors = require("lofi.errors")
    local err = errors.from_response({
      code = -32000,
      message = "no models installed at /x",
      data = { name = "MODEL_NOT_FOUND", remedy = "Run :Lofi setup ace-step." },
    })
    t.eq(err.code, errors.daemon.MODEL_NOT_FOUND)
    t.eq(err.name, "MODEL_NOT_FOUND")
    t.eq(err.remedy, "Run :Lofi setup ace-step.")
    t.eq(tostring(err), "MODEL_NOT_FOUND: no models installed at /x")
    t.contains(errors.format(err), "Run :Lofi setup ace-step.")
    local own = errors.new(errors.client.TIMEOUT, "ping got no answer")
    t.eq(own.name, "TIMEOUT")
    t.contains(own.remedy, "request_timeout_ms")
  end)
end)

t.describe("setup", function()
  t.it("rejects unknown options and wrong types, naming the option", function()
    local lofi = require("lofi")
    t.raises(function()
      lofi.setup({ deamon = {} })
    end, "unknown option `deamon`")
    t.raises(function()
      lofi.setup({ daemon = { request_timeout = 5 } })
    end, "unknown option `daemon.request_timeout`")
    t.raises(function()
      lofi.setup({ daemon = { request_timeout_ms = "5" } })
    end, '`daemon.request_timeout_ms` must be a positive integer, got "5"')
    t.raises(function()
      lofi.setup({ player = { cmd = {} } })
    end, "`player.cmd` must be a non-empty list of strings")
    t.raises(function()
      lofi.setup({ progress = { position = "middle" } })
    end, '`progress.position` must be one of "top-right"')
    t.raises(function()
      lofi.setup({ generate = { duration = "long" } })
    end, "`generate.duration` must be a number")
    t.raises(function()
      lofi.setup({ notify = "yes" })
    end, "`notify` must be true or false")
    t.raises(function()
      lofi.setup(42)
    end, "options must be a table")
  end)

  t.it("merges over the defaults, replaces lists whole and is safe to call twice", function()
    local lofi = require("lofi")
    local config = require("lofi.config")
    lofi.setup({ daemon = { args = { "--threads", "2" } }, player = { loop = true } })
    local cfg = config.get()
    t.eq(cfg.daemon.args, { "--threads", "2" })
    t.eq(cfg.daemon.request_timeout_ms, config.defaults().daemon.request_timeout_ms)
    t.eq(cfg.player.loop, true)
    t.eq(cfg.player.autoplay, true)
    lofi.setup({ progress = { enabled = false } })
    cfg = config.get()
    t.eq(cfg.player.loop, false, "each setup() starts from the defaults")
    t.eq(cfg.progress.enabled, false)
    local autocmds = vim.api.nvim_get_autocmds({ group = "Lofi", event = "VimLeavePre" })
    t.eq(#autocmds, 1, "one VimLeavePre autocmd after two setup() calls")
  end)

  t.it("works without setup()", function()
    local config = require("lofi.config")
    t.eq(config.get().generate.backend, nil, "no backend: the daemon's default applies")
    t.eq(require("lofi").status(), "")
  end)
end)

t.describe("generate options", function()
  t.it("reports an invalid option to the callback once, without starting a daemon", function()
    local lofi = require("lofi")
    local calls = {}
    lofi.generate({ prompt = "x", duration = "ten" }, function(err, track)
      table.insert(calls, { err = err, track = track })
    end)
    lofi.generate({ prompt = "x", lenght = 5 }, function(err, track)
      table.insert(calls, { err = err, track = track })
    end)
    lofi.generate({ prompt = "   " }, function(err, track)
      table.insert(calls, { err = err, track = track })
    end)
    t.wait(1000, function()
      return #calls == 3
    end, "three callbacks")
    t.sleep(50)
    t.eq(#calls, 3)
    local errors = require("lofi.errors")
    t.eq(calls[1].err.code, errors.client.INVALID_OPTION)
    t.contains(calls[1].err.message, "`duration` must be a number")
    t.contains(calls[2].err.message, "unknown option `lenght`")
    t.contains(calls[3].err.message, "`prompt` must not be empty")
    t.eq(calls[1].track, nil)
    t.eq(require("lofi.client").pid(), nil, "no daemon was started")
  end)

  t.it("checks values with the option schema, as setup() does", function()
    local lofi = require("lofi")
    local calls = {}
    local function record(err, track)
      table.insert(calls, { err = err, track = track })
    end
    lofi.generate({ prompt = "x", scheduler = "dpm" }, record)
    lofi.generate({ prompt = "x", format = "mp3" }, record)
    lofi.generate({ prompt = "x", priority = "urgent" }, record)
    lofi.generate({ prompt = "x", play = "yes" }, record)
    lofi.generate({ prompt = "x", seed = -1 }, record)
    t.wait(1000, function()
      return #calls == 5
    end, "five callbacks")
    t.sleep(50)
    t.eq(#calls, 5)
    local errors = require("lofi.errors")
    for i, call in ipairs(calls) do
      t.eq(call.err.code, errors.client.INVALID_OPTION, "call " .. i)
      t.eq(call.track, nil)
    end
    t.eq(calls[1].err.message, '`scheduler` must be one of "euler", "heun", "pingpong", got "dpm"')
    t.eq(calls[2].err.message, '`format` must be one of "wav", "flac", "ogg", got "mp3"')
    t.eq(calls[3].err.message, '`priority` must be one of "normal", "high", got "urgent"')
    t.eq(calls[4].err.message, '`play` must be true or false, got "yes"')
    t.eq(calls[5].err.message, "`seed` must be a non-negative integer, got -1")
    t.raises(function()
      lofi.setup({ generate = { scheduler = "dpm" } })
    end, '`generate.scheduler` must be one of "euler", "heun", "pingpong", got "dpm"')
    t.eq(require("lofi.client").pid(), nil, "no daemon was started")
  end)

  t.it("turns valid options into daemon parameters over the generate defaults", function()
    local generations = require("lofi.generations")
    require("lofi").setup({ generate = { steps = 9, scheduler = "pingpong" } })
    local params, err = generations.params({
      prompt = "rain",
      scheduler = "heun",
      duration = 12,
      priority = "high",
      play = false,
    })
    t.eq(err, nil)
    t.eq(params, {
      prompt = "rain",
      duration_sec = 12,
      infer_steps = 9,
      scheduler = "heun",
      format = "wav",
      priority = "high",
    })
    params = generations.params("just a prompt")
    t.eq(params.prompt, "just a prompt")
    t.eq(params.scheduler, "pingpong", "the default from setup()")
    local _, bad = generations.params(42)
    t.contains(bad.message, "takes a prompt or a table of options, got number")
  end)

  t.it("raises for a callback that is not a function", function()
    t.raises(function()
      require("lofi").generate("x", "not a function")
    end, "the callback must be a function")
  end)
end)

t.describe("events", function()
  t.it("calls subscribers and User autocmds, and unsubscribes", function()
    local events = require("lofi.events")
    local lofi = require("lofi")
    local got = {}
    local off = lofi.on("generation_progress", function(data)
      table.insert(got, data.percent)
    end)
    local seen = t.record_user_events({ "LofiGenerationProgress" })
    events.emit("generation_progress", { track_id = "a", percent = 10 })
    off()
    events.emit("generation_progress", { track_id = "a", percent = 20 })
    t.eq(got, { 10 })
    t.eq(#seen, 2)
    t.eq(seen[2].data, { track_id = "a", percent = 20 })
  end)

  t.it("keeps going when a subscriber fails", function()
    local lofi = require("lofi")
    local messages = t.capture_notify()
    local after = false
    lofi.on("daemon_exit", function()
      error("boom")
    end)
    lofi.on("daemon_exit", function()
      after = true
    end)
    require("lofi.events").emit("daemon_exit", { pid = 1 })
    t.ok(after, "the second subscriber ran")
    t.contains(t.joined(messages), "boom")
  end)

  t.it("rejects unknown events", function()
    t.raises(function()
      require("lofi").on("generation_done", function() end)
    end, 'unknown event "generation_done"')
  end)
end)

t.describe("progress and status", function()
  t.it("renders a bar that fits the width", function()
    local progress = require("lofi.progress")
    t.eq(progress.bar(50, 10), "█████░░░░░")
    t.eq(progress.bar(0, 4), "░░░░")
    t.eq(progress.bar(120, 4), "████")
    local lines = progress.render({
      prompt = "rainy night",
      status = "running",
      percent = 42,
      phase = "diffusion",
      eta_sec = 3.2,
    }, 40)
    t.eq(lines[1], "lofi: rainy night")
    t.eq(vim.fn.strdisplaywidth(lines[2]), 40)
    t.contains(lines[2], " 42% diffusion ~4s")
    local queued = progress.render({ prompt = "x", status = "queued", position = 2 }, 40)
    t.eq(queued[2], "queued (position 2)")
  end)

  t.it("opens a float that cannot take the focus, and closes it", function()
    local progress = require("lofi.progress")
    local before = vim.api.nvim_get_current_win()
    progress.update({ prompt = "x", status = "running", percent = 10 })
    local win = progress.win()
    t.ok(win, "the float is open")
    local win_config = vim.api.nvim_win_get_config(win)
    t.eq(win_config.relative, "editor")
    t.eq(win_config.focusable, false)
    t.eq(vim.api.nvim_get_current_win(), before, "the focus did not move")
    progress.close()
    t.eq(progress.win(), nil)
  end)

  t.it("does not open the float when progress is disabled", function()
    require("lofi").setup({ progress = { enabled = false } })
    local progress = require("lofi.progress")
    progress.update({ prompt = "x", status = "running", percent = 10 })
    t.eq(progress.win(), nil)
  end)
end)

t.describe(":Lofi", function()
  t.it("explains an unknown subcommand", function()
    local messages = t.capture_notify()
    vim.cmd("Lofi frobnicate")
    t.eq(#messages, 1)
    t.eq(messages[1].level, vim.log.levels.ERROR)
    t.contains(messages[1].msg, 'unknown subcommand "frobnicate"')
    t.contains(messages[1].msg, "generate, log, pause, play")
  end)

  t.it("names a bad generate argument", function()
    local messages = t.capture_notify()
    vim.cmd("Lofi generate rainy night duration=long")
    t.contains(t.joined(messages), '`duration` must be a number, got "long"')
    t.eq(require("lofi.client").pid(), nil, "no daemon was started")
  end)

  t.it("parses key=value arguments out of the prompt", function()
    local commands = require("lofi.commands")
    local opts = commands.parse_generate({ "rainy", "duration=12", "night", "seed=3", "steps=4" })
    t.eq(opts, { prompt = "rainy night", duration = 12, seed = 3, steps = 4 })
    t.eq(commands.parse_generate({}), {})
  end)

  t.it("completes scheduler and format values from the option schema", function()
    local commands = require("lofi.commands")
    local config = require("lofi.config")
    t.eq(commands.complete("scheduler=", "Lofi generate x scheduler="), {
      "scheduler=euler",
      "scheduler=heun",
      "scheduler=pingpong",
    })
    local formats = vim.tbl_map(function(value)
      return "format=" .. value
    end, config.choices("generate", "format"))
    t.eq(commands.complete("format=", "Lofi generate x format="), formats)
    t.eq(config.choices("generate", "prompt"), nil)
  end)

  t.it("completes subcommands and their arguments", function()
    local commands = require("lofi.commands")
    t.eq(commands.complete("", "Lofi "), commands.names())
    t.eq(commands.complete("st", "Lofi st"), { "status", "stop" })
    t.eq(commands.complete("", "Lofi setup "), { "ace-step", "ace-step-1.5", "cancel" })
    t.eq(
      commands.complete("", "Lofi setup ace-step "),
      { "checkpoint=", "precision=", "force", "yes" }
    )
    t.eq(commands.complete("", "Lofi config "), { "backend", "variant" })
    t.eq(commands.complete("", "Lofi config backend "), { "ace-step", "ace-step-1.5", "default" })
    t.eq(commands.complete("sch", "Lofi generate calm sch"), { "scheduler=" })
    t.eq(commands.complete("scheduler=h", "Lofi generate calm scheduler=h"), { "scheduler=heun" })
    t.eq(vim.fn.getcompletion("Lofi lo", "cmdline"), { "log" })
  end)

  t.it("does nothing but say so when disabled", function()
    local messages = t.capture_notify()
    vim.g.lofi_disable = true
    vim.cmd("Lofi generate x")
    t.contains(t.joined(messages), "disabled")
    t.eq(require("lofi.client").pid(), nil)
  end)

  t.it("reports a daemon that cannot be found", function()
    local lofi = require("lofi")
    lofi.setup({ daemon = { cmd = { "/nonexistent/lofi-daemon" } } })
    local got
    lofi.generate("x", function(err)
      got = err
    end)
    t.wait(2000, function()
      return got ~= nil
    end, "the callback")
    t.eq(got.name, "DAEMON_SPAWN_FAILED")
    t.contains(got.message, "/nonexistent/lofi-daemon")
  end)
end)

t.describe("daemon discovery", function()
  t.it("prefers the daemon installed in the plugin's .venv", function()
    local client = require("lofi.client")
    local plugin_root = t.tmpdir()
    local bin = vim.fs.joinpath(plugin_root, ".venv", "bin")
    vim.fn.mkdir(bin, "p")
    local exe = vim.fs.joinpath(bin, "lofi-daemon")
    vim.fn.writefile({ "#!/bin/sh" }, exe)
    vim.uv.fs_chmod(exe, tonumber("755", 8))
    local found = client.find_executable(plugin_root)
    t.eq(found, exe)
    t.eq(client.plugin_root(), t.root)
  end)

  t.it("builds the serve command line from the options", function()
    local client = require("lofi.client")
    local config = require("lofi.config")
    config.setup({
      daemon = {
        cmd = { "sh", "-c", "x" },
        models_dir = "/m",
        cache_dir = "/c",
        log_file = "/l.log",
        args = { "--threads", "2" },
      },
    })
    local argv = client.command(config.get())
    t.eq(argv, {
      "sh",
      "-c",
      "x",
      "serve",
      "--models",
      "/m",
      "--cache-dir",
      "/c",
      "--log-file",
      "/l.log",
      "--threads",
      "2",
    })
  end)
end)

t.describe("doc/lofi.txt", function()
  local doc = t.root .. "/doc/lofi.txt"

  ---@return table<string, boolean>
  local function tags()
    local found = {}
    for _, line in ipairs(vim.fn.readfile(doc)) do
      for tag in line:gmatch("%*([^%s*]+)%*") do
        t.ok(not found[tag], "duplicate tag " .. tag)
        found[tag] = true
      end
    end
    return found
  end

  t.it("has a tag for every option, command, function and event", function()
    local found = tags()
    local missing = {}
    local function need(tag)
      if not found[tag] then
        table.insert(missing, tag)
      end
    end
    for _, name in ipairs(require("lofi.config").option_names()) do
      need("lofi-config-" .. name)
    end
    for _, name in ipairs(require("lofi.commands").names()) do
      need(":Lofi-" .. name)
    end
    for name, value in pairs(require("lofi")) do
      if type(value) == "function" then
        need("lofi." .. name .. "()")
      end
    end
    for _, pattern in pairs(require("lofi.events").patterns) do
      need(pattern)
    end
    for _, tag in ipairs({ ":Lofi", "lofi-events", "lofi-health", "lofi-errors", "lofi-config" }) do
      need(tag)
    end
    table.sort(missing)
    t.eq(missing, {}, "tags missing from doc/lofi.txt")
  end)

  t.it("builds help tags without errors", function()
    local dir = t.tmpdir()
    vim.fn.mkdir(dir .. "/doc", "p")
    vim.fn.writefile(vim.fn.readfile(doc), dir .. "/doc/lofi.txt")
    vim.cmd.helptags(vim.fn.fnameescape(dir .. "/doc"))
    local lines = vim.fn.readfile(dir .. "/doc/tags")
    t.ok(#lines > 50, "tags written")
  end)
end)

t.describe("module structure", function()
  --- Every module under lua/lofi and the lofi modules its source requires (also lazily).
  ---@return table<string, string[]>
  local function require_graph()
    local graph = {}
    for _, path in ipairs(vim.fn.glob(t.root .. "/lua/lofi/*.lua", false, true)) do
      local base = vim.fn.fnamemodify(path, ":t:r")
      local name = base == "init" and "lofi" or ("lofi." .. base)
      local text = table.concat(vim.fn.readfile(path), "\n"):gsub("%-%-[^\n]*", "")
      local deps = {}
      for dep in text:gmatch('require%(%s*"(lofi[%w_.]*)"%s*%)') do
        if dep ~= name then
          deps[#deps + 1] = dep
        end
      end
      graph[name] = deps
    end
    return graph
  end

  t.it("has no require cycles, counting requires inside functions", function()
    local graph = require_graph()
    t.ok(graph["lofi.rpc"] and graph["lofi"], "the graph was read")
    local cycles = {}
    local state = {}
    local stack = {}
    local function visit(name)
      state[name] = "open"
      table.insert(stack, name)
      for _, dep in ipairs(graph[name] or {}) do
        if state[dep] == "open" then
          local from = vim.fn.index(stack, dep) + 1
          table.insert(cycles, table.concat(vim.list_slice(stack, from), " -> ") .. " -> " .. dep)
        elseif state[dep] == nil then
          visit(dep)
        end
      end
      table.remove(stack)
      state[name] = "done"
    end
    local names = vim.tbl_keys(graph)
    table.sort(names)
    for _, name in ipairs(names) do
      if state[name] == nil then
        visit(name)
      end
    end
    t.eq(cycles, {})
  end)

  t.it("keeps the RPC layer independent of the API module", function()
    local graph = require_graph()
    t.ok(not vim.list_contains(graph["lofi.rpc"], "lofi"), "lofi.rpc requires lofi")
    t.ok(not vim.list_contains(graph["lofi.client"], "lofi"), "lofi.client requires lofi")
    require("lofi.rpc")
    t.eq(package.loaded["lofi"], nil, "loading lofi.rpc loaded the API module")
  end)

  t.it("keeps every module under 450 lines", function()
    local long = {}
    for _, path in ipairs(vim.fn.glob(t.root .. "/lua/lofi/*.lua", false, true)) do
      local count = #vim.fn.readfile(path)
      if count > 450 then
        table.insert(long, string.format("%s: %d", vim.fn.fnamemodify(path, ":t"), count))
      end
    end
    t.eq(long, {})
  end)

  t.it("routes notifications by kind once the API module is loaded", function()
    require("lofi")
    local routing = require("lofi.routing")
    local seen = {}
    for _, name in ipairs({ "setup_progress", "generation_start" }) do
      require("lofi.events").on(name, function(data)
        table.insert(seen, { name = name, data = data })
      end)
    end
    routing.route("setup_progress", { backend = "ace-step", phase = "download", percent = 5 })
    routing.route("generation_start", { prompt = "no track id" })
    routing.route("setup_progress", { phase = "no backend" })
    routing.route("something_else", { track_id = "a" })
    routing.route("generation_start", { track_id = "a" })
    t.eq(
      vim.tbl_map(function(item)
        return item.name
      end, seen),
      { "setup_progress", "generation_start" }
    )
    t.eq(seen[1].data.phase, "download")
    t.eq(seen[2].data.track_id, "a")
  end)
end)
