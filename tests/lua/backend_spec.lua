-- The backend choice (ACE-Step v1 or 1.5 turbo) without a daemon: `:Lofi config backend`, the
-- saved choice in stdpath("state"), what `generate` sends, the statusline, `:Lofi setup`
-- completion and the song options of `:Lofi generate`.
local t = require("lofi_test")

local BOTH = {
  { name = "ace-step", status = "ready", default = true, providers = { "CPUExecutionProvider" } },
  { name = "ace-step-1.5", status = "not_installed", default = false, providers = {} },
}

--- Make `lofi.backends()` answer `list` without a daemon (kept like the real one does).
---@param list table[]
local function stub_backends(list)
  require("lofi").backends = function(cb)
    require("lofi.backend").remember(list)
    cb(nil, vim.deepcopy(list))
  end
end

---@return string
local function state_path()
  return require("lofi.backend").state_path()
end

--- Forget every lofi module, as a new Neovim session would (the state file stays).
local function new_session()
  for name in pairs(package.loaded) do
    if name == "lofi" or name:match("^lofi%.") then
      package.loaded[name] = nil
    end
  end
end

t.describe("backend choice", function()
  t.after_each(function()
    os.remove(state_path())
  end)

  t.it("config backend sets, saves and a new session reloads it", function()
    stub_backends(BOTH)
    local messages = t.capture_notify()
    vim.cmd("Lofi config backend ace-step-1.5")
    t.contains(messages[1].msg, "backend: ace-step-1.5 (not_installed)")
    t.contains(messages[1].msg, ":Lofi setup ace-step-1.5")
    t.eq(require("lofi.config").get().generate.backend, "ace-step-1.5")
    local saved = vim.json.decode(table.concat(vim.fn.readfile(state_path()), "\n"))
    t.eq(saved.backend, "ace-step-1.5")
    t.eq(saved.written_by, "lofi.nvim")
    local left = vim.fn.glob(vim.fs.dirname(state_path()) .. "/*.tmp", true, true)
    t.eq(left, {}, "no temporary file is left")

    new_session()
    require("lofi").setup({})
    local choice = require("lofi.backend")
    t.eq({ choice.in_use() }, { "ace-step-1.5", "saved" })
    local params = require("lofi.generate_params").build({ prompt = "rain" })
    t.eq(params.backend, "ace-step-1.5", "the saved choice is sent")
    t.eq(
      require("lofi.generate_params").build({ prompt = "x", backend = "ace-step" }).backend,
      "ace-step"
    )

    -- generate.backend in setup() wins over the saved choice
    require("lofi").setup({ generate = { backend = "ace-step" } })
    t.eq({ choice.in_use() }, { "ace-step", "option" })
    t.eq(require("lofi.generate_params").build("x").backend, "ace-step")

    -- `default` forgets the choice: nothing is sent, the daemon's default applies
    require("lofi").setup({})
    vim.cmd("Lofi config backend default")
    t.eq(vim.uv.fs_stat(state_path()), nil, "the state file is removed")
    t.eq(require("lofi.generate_params").build("x").backend, nil)
  end)

  t.it("sends no backend when none is chosen", function()
    require("lofi").setup({})
    local params = require("lofi.generate_params").build({ prompt = "rain" })
    t.eq(params.backend, nil)
    t.eq(require("lofi.backend").configured(), nil)
  end)

  t.it("refuses an unknown backend and lists the daemon's", function()
    stub_backends(BOTH)
    local messages = t.capture_notify()
    vim.cmd("Lofi config backend nope")
    t.eq(messages[1].level, vim.log.levels.ERROR)
    t.contains(messages[1].msg, 'unknown backend "nope" (available: ace-step, ace-step-1.5)')
    t.eq(require("lofi.config").get().generate.backend, nil)
    t.eq(vim.uv.fs_stat(state_path()), nil, "nothing is saved")
  end)

  t.it("shows the backend in use and each backend's install status", function()
    stub_backends(BOTH)
    local messages = t.capture_notify()
    vim.cmd("Lofi config backend")
    t.contains(messages[1].msg, "backend: ace-step (the daemon's default)")
    t.contains(messages[1].msg, "backends: ace-step ready, ace-step-1.5 not installed")
  end)

  t.it("says when setup() overrides the saved choice in new sessions", function()
    stub_backends(BOTH)
    require("lofi").setup({ generate = { backend = "ace-step" } })
    local messages = t.capture_notify()
    vim.cmd("Lofi config backend ace-step-1.5")
    t.contains(messages[1].msg, 'setup() sets generate.backend = "ace-step"')
    t.eq(require("lofi.config").get().generate.backend, "ace-step-1.5", "this session")
  end)

  t.it("never reads, overwrites or removes a file it did not write", function()
    local path = state_path()
    vim.fn.mkdir(vim.fs.dirname(path), "p")
    vim.fn.writefile({ '{"backend": "ace-step-1.5"}' }, path)
    t.eq(require("lofi.backend").configured(), nil, "a file without the mark is ignored")
    stub_backends(BOTH)
    local messages = t.capture_notify()
    vim.cmd("Lofi config backend ace-step-1.5")
    t.eq(messages[1].level, vim.log.levels.WARN)
    t.contains(messages[1].msg, "for this session only: not saved: " .. path)
    t.eq(vim.fn.readfile(path), { '{"backend": "ace-step-1.5"}' }, "the file is untouched")
    vim.cmd("Lofi config backend default")
    t.eq(vim.fn.readfile(path), { '{"backend": "ace-step-1.5"}' }, "and not removed")

    os.remove(path)
    local target = vim.fs.joinpath(t.tmpdir(), "elsewhere.json")
    vim.fn.writefile({ '{"written_by": "lofi.nvim", "backend": "ace-step-1.5"}' }, target)
    vim.uv.fs_symlink(target, path)
    package.loaded["lofi.backend"] = nil
    t.eq(require("lofi.backend").configured(), nil, "a link is not followed")
    local ok = require("lofi.backend").save("ace-step")
    t.eq(ok, false)
    t.eq(vim.uv.fs_lstat(path).type, "link", "the link is left alone")
  end)
end)

t.describe("backend in the statusline, status and completion", function()
  t.it("names the backend of a generation and the backend in use", function()
    local status = require("lofi.status")
    t.eq(status.backend(), "", "unknown before the daemon answered")
    require("lofi.backend").remember(BOTH)
    t.eq(status.backend(), "ace-step", "the daemon's default")
    require("lofi").setup({ generate = { backend = "ace-step-1.5" }, notify = false })
    t.eq(status.backend(), "ace-step-1.5")
    local rpc = require("lofi.rpc")
    rpc.request = function(method, _, cb)
      t.eq(method, "generate")
      vim.schedule(function()
        cb(nil, { track_id = "abc123", status = "queued", position = 1 })
      end)
    end
    require("lofi").generate({ prompt = "rain", play = false }, function() end)
    t.wait(2000, function()
      return require("lofi").active()[1].track_id ~= nil
    end, "the accepted request")
    require("lofi.routing").route("generation_progress", { track_id = "abc123", percent = 40 })
    t.eq(status.text(), "♪ 40% ace-step-1.5")
    require("lofi.routing").route("generation_cancelled", { track_id = "abc123" })
  end)

  t.it(":Lofi status without a daemon names the configured backend", function()
    require("lofi").setup({ generate = { backend = "ace-step-1.5" }, notify = false })
    local messages = t.capture_notify()
    vim.cmd("Lofi status")
    t.contains(messages[1].msg, "backend: ace-step-1.5 (generate.backend)")
  end)

  t.it("completes setup and generate with the backends", function()
    local commands = require("lofi.commands")
    t.eq(commands.complete("ace-step-", "Lofi setup ace-step-"), { "ace-step-1.5" })
    t.eq(commands.complete("backend=", "Lofi generate x backend="), {
      "backend=ace-step",
      "backend=ace-step-1.5",
    })
    require("lofi.backend").remember({ { name = "ace-step-2", status = "not_installed" } })
    t.eq(commands.complete("", "Lofi config backend "), {
      "ace-step",
      "ace-step-1.5",
      "ace-step-2",
      "default",
    })
    t.eq(commands.parse_setup({ "ace-step-1.5", "yes" }), { backend = "ace-step-1.5", yes = true })
    t.eq(commands.complete("shift=", "Lofi generate shift="), { "shift=1", "shift=2", "shift=3" })
  end)

  t.it("setup runs the chosen backend", function()
    local rpc = require("lofi.rpc")
    local sent
    rpc.request = function(method, params)
      sent = { method = method, params = params }
    end
    t.capture_notify()
    vim.cmd("Lofi setup ace-step-1.5 yes")
    t.eq(sent, { method = "setup", params = { backend = "ace-step-1.5", confirm = true } })
  end)
end)

t.describe("song options of :Lofi generate", function()
  t.it("map to the daemon's fields", function()
    local commands = require("lofi.commands")
    local opts, err = commands.parse_generate({
      "night",
      "drive",
      'lyrics="[verse]\\nneon',
      'rain"',
      "language=en",
      "bpm=80",
      "key='C",
      "major'",
      "time_signature=4",
      "shift=3",
      "backend=ace-step-1.5",
    })
    t.eq(err, nil)
    t.eq(opts, {
      prompt = "night drive",
      lyrics = "[verse]\nneon rain",
      vocal_language = "en",
      bpm = 80,
      keyscale = "C major",
      time_signature = 4,
      shift = 3,
      backend = "ace-step-1.5",
    })
    local params = require("lofi.generate_params").build(opts)
    t.eq(params.lyrics, "[verse]\nneon rain")
    t.eq(params.vocal_language, "en")
    t.eq(params.bpm, 80)
    t.eq(params.keyscale, "C major")
    t.eq(params.time_signature, 4)
    t.eq(params.shift, 3)
    t.eq(params.backend, "ace-step-1.5")
    t.eq(params.duration_sec, 30)
  end)

  t.it("leave out the generate defaults that ACE-Step 1.5 does not take", function()
    local build = require("lofi.generate_params").build
    require("lofi").setup({ generate = { steps = 60, scheduler = "heun", variant = "chill" } })
    local params = build({ prompt = "x", backend = "ace-step-1.5" })
    t.eq(params.infer_steps, nil)
    t.eq(params.scheduler, nil)
    t.eq(params.variant, nil)
    t.eq(params.format, "wav", "a default both take is sent")
    t.eq(build({ prompt = "x", backend = "ace-step-1.5", steps = 10 }).infer_steps, 10, "set: sent")
    t.eq(build({ prompt = "x", backend = "ace-step" }).infer_steps, 60)
    t.eq(build({ prompt = "x" }).infer_steps, 60, "unknown backend: sent")
    -- the daemon's list decides once known: its default, and the fields each backend takes
    require("lofi.backend").remember({
      { name = "ace-step", status = "not_installed", default = false, params = { "prompt" } },
      { name = "ace-step-1.5", status = "ready", default = true, params = { "prompt", "shift" } },
    })
    params = build({ prompt = "x" })
    t.eq(params.backend, nil, "the daemon's default is not sent")
    t.eq(params.infer_steps, nil, "but its params decide the defaults")
    t.eq(params.duration_sec, nil)
  end)

  t.it("name a bad argument", function()
    local commands = require("lofi.commands")
    local _, err = commands.parse_generate({ "x", "bpm=fast" })
    t.contains(err, "`bpm` must be a number")
    _, err = commands.parse_generate({ "x", 'key="C', "major" })
    t.contains(err, '`key=` has no closing "')
    _, err = commands.parse_generate({ "x", "lyrics=" })
    t.contains(err, "`lyrics=` needs a value")
    local _, bad = require("lofi.generate_params").build({ prompt = "x", bpm = 80.5 })
    t.contains(bad.message, "`bpm` must be a positive integer")
    local _, unknown = commands.parse_generate({ "x", "tempo=80" })
    t.contains(unknown, "valid keys: backend, bpm, duration, format, key, language, lyrics")
  end)

  t.it("show the daemon's INVALID_PARAMETER as it is", function()
    require("lofi").setup({ notify = false })
    local rpc = require("lofi.rpc")
    rpc.request = function(_, _, cb)
      vim.schedule(function()
        cb(
          require("lofi.errors").new(-32013, "`lyrics` is not a parameter of backend ace-step"),
          nil
        )
      end)
    end
    local messages = t.capture_notify()
    vim.cmd("Lofi generate rain lyrics=hello")
    t.wait(2000, function()
      return #messages > 0
    end, "the error")
    t.eq(messages[1].level, vim.log.levels.ERROR)
    t.contains(messages[1].msg, "`lyrics` is not a parameter of backend ace-step")
  end)
end)

t.describe("both backends with a daemon", function()
  t.after_each(function()
    os.remove(state_path())
  end)

  t.it("generates with ace-step-1.5 chosen by :Lofi config backend, with song options", function()
    local lofi = require("lofi")
    local turbo = t.env("LOFI_TEST_TURBO_MODELS")
    lofi.setup(t.config({ daemon = { env = { LOFI_MODELS_DIR_ACE_STEP_1_5 = turbo } } }))
    local messages = t.capture_notify()
    vim.cmd("Lofi config backend ace-step-1.5")
    t.wait(30000, function()
      return #messages >= 1
    end, "the answer")
    t.eq(messages[1].msg, "[lofi] backend: ace-step-1.5 (ready)")

    local rpc = require("lofi.rpc")
    local request, sent = rpc.request, {}
    rpc.request = function(method, params, ...)
      if method == "generate" then
        table.insert(sent, params)
      end
      return request(method, params, ...)
    end
    local status_seen, done
    lofi.on("generation_progress", function()
      status_seen = status_seen or require("lofi.status").text()
    end)
    lofi.on("generation_complete", function(track)
      done = { track = track }
    end)
    lofi.on("generation_error", function(data)
      done = { err = data }
    end)
    vim.cmd(
      'Lofi generate night drive duration=5 seed=3 lyrics="[verse]\\nneon rain" language=en '
        .. 'bpm=80 key="C major" time_signature=4 shift=2'
    )
    t.wait(300000, function()
      return done ~= nil
    end, "the 1.5 track")
    t.eq(done.err, nil)
    t.eq(sent[1].backend, "ace-step-1.5")
    t.eq(sent[1].lyrics, "[verse]\nneon rain")
    t.eq(sent[1].keyscale, "C major")
    t.eq(sent[1].infer_steps, nil, "the steps default is not sent to 1.5")
    t.ok(vim.uv.fs_stat(done.track.path), "the file is written")
    t.eq(done.track.sample_rate, 48000)
    t.contains(status_seen or "", "ace-step-1.5", "the statusline names the backend")

    vim.cmd("Lofi status")
    t.wait(30000, function()
      return #messages >= 2
    end, "the status")
    local text = t.joined(messages)
    t.contains(text, "backend: ace-step-1.5 (generate.backend)")
    t.contains(text, "backends: ace-step ready, ace-step-1.5 ready")
    t.contains(text, "models: " .. turbo .. " (ready, model version ace-step-1.5-turbo-")

    -- the same song option on v1 is refused by the daemon, naming the backend
    local refused
    lofi.generate({ prompt = "x", duration = 5, backend = "ace-step", bpm = 80 }, function(err)
      refused = err or false
    end)
    t.wait(30000, function()
      return refused ~= nil
    end, "the refusal")
    t.eq(refused and refused.name, "INVALID_PARAMETER")
    t.contains(refused.message, "bpm is not a parameter of the backend ace-step")
  end)
end)
