-- The audio-task commands and options without a daemon: argument parsing, the request built
-- from a source track, and bad input refused with a specific message before anything is sent.
local t = require("lofi_test")

local ID = "0123456789abcdef01234567"
local OTHER = "89abcdef0123456789abcdef"

--- A cached track as `tracks.list` gives it, made with `params`.
---@param overrides? table
---@return table
local function track(overrides)
  return vim.tbl_extend("force", {
    track_id = ID,
    path = "/cache/" .. ID .. ".wav",
    prompt = "rainy night",
    duration_sec = 10.0,
    seed = 42,
    format = "wav",
    task = "text2music",
    params = {
      prompt = "rainy night",
      duration_sec = 10.0,
      seed = 42,
      infer_steps = 5,
      scheduler = "heun",
      guidance_scale = 12.0,
      cfg_type = "cfg",
      format = "flac",
      task = "text2music",
    },
  }, overrides or {})
end

--- Call `generate()` with each options table; returns the callback calls in order.
---@param list table[]
---@return {err: lofi.Error?, track: table?}[]
local function generate_all(list)
  local calls = {}
  for i, opts in ipairs(list) do
    require("lofi").generate(opts, function(err, tr)
      calls[i] = { err = err, track = tr }
    end)
  end
  t.wait(2000, function()
    return vim.tbl_count(calls) == #list
  end, "every callback")
  return calls
end

t.describe("task times", function()
  t.it("reads seconds and minutes:seconds", function()
    local parse = require("lofi.task_args").parse_time
    t.eq(parse("12"), 12)
    t.eq(parse("12.5"), 12.5)
    t.eq(parse("0"), 0)
    t.eq(parse("1:30"), 90)
    t.eq(parse("0:07.5"), 7.5)
    t.eq(parse("3:00"), 180)
  end)

  t.it("rejects anything else", function()
    local parse = require("lofi.task_args").parse_time
    for _, bad in ipairs({
      "",
      "abc",
      "-3",
      "1:60",
      "1:5",
      "1:30:00",
      "0x10",
      "1e3",
      "inf",
      "nan",
      ":30",
    }) do
      t.eq(parse(bad), nil, bad)
    end
  end)
end)

t.describe("task arguments", function()
  local function parse(name, args, picked)
    return require("lofi.task_args").parse(name, args, picked)
  end

  t.it("repaint takes a region in seconds or m:ss", function()
    local request = parse("repaint", { "0:10", "20.5", "variance=0.3", "retake_seed=9" })
    t.eq(request, {
      opts = {
        task = "repaint",
        repaint_start = 10,
        repaint_end = 20.5,
        retake_variance = 0.3,
        retake_seed = 9,
      },
    })
    t.eq(parse("repaint", { "1", "2", "track=" .. ID }).src, ID)
  end)

  t.it("repaint names what is wrong with a region", function()
    local _, err = parse("repaint", { "10" })
    t.contains(err, "repaint needs {start} and {end} (seconds or m:ss")
    _, err = parse("repaint", { "10", "soon" })
    t.eq(err, '"soon" is not a time: use seconds (12.5) or minutes:seconds (1:30)')
    _, err = parse("repaint", { "1:75", "2:00" })
    t.contains(err, '"1:75" is not a time')
    _, err = parse("repaint", { "0:20", "0:10" })
    t.eq(err, "the end (0:10) must come after the start (0:20)")
    _, err = parse("repaint", { "1", "2", "variance=2" })
    t.eq(err, '`variance` must be a number from 0 to 1, got "2"')
    _, err = parse("repaint", { "1", "2", "variance=" })
    t.eq(err, "`variance=` needs a value")
    _, err = parse("repaint", { "1", "2", "strength=0.5" })
    t.eq(
      err,
      'unknown key `strength` in "strength=0.5" for repaint (valid keys: variance, retake_seed, track)'
    )
  end)

  t.it("extend adds 30 s on the right unless told otherwise", function()
    t.eq(parse("extend", {}).opts, { task = "extend", extend_right = 30 })
    t.eq(parse("extend", { "left=1:00" }).opts, { task = "extend", extend_left = 60 })
    t.eq(
      parse("extend", { "left=2", "right=4.5" }).opts,
      { task = "extend", extend_left = 2, extend_right = 4.5 }
    )
    local _, err = parse("extend", { "left=0", "right=0" })
    t.eq(err, "extend needs left= or right= above 0 seconds")
    _, err = parse("extend", { "right=-5" })
    t.eq(err, '`right` must be seconds (12.5) or minutes:seconds (1:30), got "-5"')
    _, err = parse("extend", { "more" })
    t.contains(err, 'unexpected argument "more" (usage: :Lofi extend')
  end)

  t.it("retake takes a variance, a seed and a track", function()
    local request = parse("retake", { "variance=0.25", "track=" .. ID })
    t.eq(request, { opts = { task = "retake", retake_variance = 0.25 }, src = ID })
    local _, err = parse("retake", { "track=abc" })
    t.eq(err, '`track` must be a track id (24 hex digits; <Tab> completes them), got "abc"')
    _, err = parse("retake", { "retake_seed=1.5" })
    t.eq(err, '`retake_seed` must be an integer from 0 to 2^32-1, got "1.5"')
    _, err = parse("retake", { "track=" .. ID }, true)
    t.contains(err, "unknown key `track`")
  end)

  t.it("remix names its source, then the prompt", function()
    local request = parse("remix", { "~/song.wav", "dusty", "strength=0.3", "tape" })
    t.eq(request, {
      opts = { task = "audio2audio", prompt = "dusty tape", ref_strength = 0.3 },
      src = "~/song.wav",
    })
    t.eq(parse("remix", { ID }), { opts = { task = "audio2audio" }, src = ID })
    t.eq(
      parse("remix", { "calm", "rain" }, true),
      { opts = { task = "audio2audio", prompt = "calm rain" } }
    )
    t.eq(parse("remix", { "a.wav", "--", "mood=calm" }).opts.prompt, "mood=calm")
    local _, err = parse("remix", {})
    t.contains(err, "remix needs a file or a track id")
    _, err = parse("remix", { "a.wav", "strength=1" })
    t.eq(err, '`strength` must be a number from 0 up to (not including) 1, got "1"')
  end)

  t.it("edit takes the new prompt and a preset", function()
    t.eq(parse("edit", { "jazz", "piano" }).opts, {
      task = "edit",
      edit_prompt = "jazz piano",
      edit_n_min = 0.2,
      edit_n_max = 0.4,
    })
    local opts = parse("edit", { "jazz", "preset=only_lyrics", "n_avg=2" }).opts
    t.eq({ opts.edit_n_min, opts.edit_n_max, opts.edit_n_avg }, { 0.6, 1.0, 2 })
    t.eq(parse("edit", { "x", "n_max=0.9" }).opts.edit_n_max, 0.9)
    local _, err = parse("edit", { "x", "n_min=0.5" })
    t.eq(err, "`n_min` (0.5) must be below `n_max` (0.4)")
    _, err = parse("edit", { "preset=remix" })
    t.eq(err, "edit needs the new prompt: :Lofi edit {new prompt}")
    _, err = parse("edit", { "x", "preset=loud" })
    t.eq(err, '`preset` must be remix or only_lyrics, got "loud"')
    _, err = parse("edit", { "x", "n_avg=9" })
    t.eq(err, '`n_avg` must be an integer from 1 to 8, got "9"')
  end)
end)

t.describe("task commands", function()
  t.it("refuse bad arguments with a message and send nothing", function()
    local messages = t.capture_notify()
    for _, cmd in ipairs({
      "Lofi repaint 10 abc",
      "Lofi repaint 20 10",
      "Lofi extend right=soon",
      "Lofi retake variance=high",
      "Lofi remix",
      "Lofi edit preset=remix",
      "Lofi tracks extend right=x",
      "Lofi tracks dance",
    }) do
      vim.cmd(cmd)
    end
    t.eq(#messages, 8)
    for _, m in ipairs(messages) do
      t.eq(m.level, vim.log.levels.ERROR, m.msg)
    end
    t.contains(messages[1].msg, 'INVALID_OPTION: "abc" is not a time')
    t.contains(messages[2].msg, "the end (10) must come after the start (20)")
    t.contains(
      messages[3].msg,
      '`right` must be seconds (12.5) or minutes:seconds (1:30), got "soon"'
    )
    t.contains(messages[4].msg, '`variance` must be a number from 0 to 1, got "high"')
    t.contains(messages[5].msg, "remix needs a file or a track id")
    t.contains(messages[6].msg, "edit needs the new prompt")
    t.contains(messages[7].msg, "`right` must be seconds")
    t.contains(messages[8].msg, 'unknown tracks action "dance"')
    t.eq(require("lofi.client").pid(), nil, "no daemon was started")
  end)

  t.it("complete their names, keys and values", function()
    local commands = require("lofi.commands")
    for _, name in ipairs({ "edit", "extend", "remix", "repaint", "retake" }) do
      t.ok(vim.list_contains(commands.names(), name), name)
    end
    t.eq(commands.complete("", "Lofi extend "), { "left=", "right=", "retake_seed=", "track=" })
    t.eq(commands.complete("v", "Lofi retake v"), { "variance=" })
    t.eq(
      commands.complete("preset=", "Lofi edit jazz preset="),
      { "preset=only_lyrics", "preset=remix" }
    )
    t.eq(commands.complete("n_m", "Lofi edit jazz n_m"), { "n_min=", "n_max=" })
    t.eq(commands.complete("st", "Lofi remix a.wav st"), { "strength=", "steps=" })
    local actions = commands.complete("", "Lofi tracks ")
    table.sort(actions)
    t.eq(actions, { "edit", "extend", "remix", "repaint", "retake" })
    t.eq(commands.complete("", "Lofi tracks extend "), { "left=", "right=", "retake_seed=" })
    t.eq(commands.complete("", "Lofi config "), { "backend", "variant" })
    t.eq(commands.complete("", "Lofi config variant "), { "none" })
  end)
end)

t.describe("task requests", function()
  t.it("take the source track's parameters, never its duration, and a new retake seed", function()
    local build = require("lofi.generate_params").build
    require("lofi").setup({ generate = { steps = 9, seed = 1 } })
    local params, err = build({ task = "extend", src = ID, extend_right = 10 }, track())
    t.eq(err, nil)
    t.ok(type(params.retake_seed) == "number" and params.retake_seed >= 0, "a retake seed")
    params.retake_seed = nil
    t.eq(params, {
      task = "extend",
      src_track_id = ID,
      extend_right = 10,
      prompt = "rainy night",
      seed = 42,
      infer_steps = 5,
      scheduler = "heun",
      guidance_scale = 12.0,
      cfg_type = "cfg",
      format = "flac",
    })
    local a = build({ task = "retake", src = ID }, track())
    local b = build({ task = "retake", src = ID }, track())
    t.eq(a.duration_sec, 10.0, "a retake keeps the length")
    t.eq(a.src_track_id, nil, "a retake sends no source")
    t.neq(a.retake_seed, b.retake_seed, "each retake draws its own seed")
    t.eq(build({ task = "retake", src = ID, retake_seed = 7 }, track()).retake_seed, 7)
  end)

  t.it("use the prompt of a track without params, and the defaults for the rest", function()
    local build = require("lofi.generate_params").build
    local bare = track({ seed = 3, prompt = "dusk" })
    bare.params = nil
    local params = build({ task = "repaint", src = ID, repaint_start = 1, repaint_end = 2 }, bare)
    t.eq(
      { params.prompt, params.seed, params.infer_steps, params.duration_sec },
      { "dusk", 3, 27, nil }
    )
    t.eq(params.retake_variance, nil, "the daemon's default variance")
  end)

  t.it("edit keeps the source prompt, runs with euler and sends the new prompt", function()
    local build = require("lofi.generate_params").build
    local params = build(
      { task = "edit", src = ID, edit_prompt = "jazz", edit_n_min = 0.2, edit_n_max = 0.4 },
      track()
    )
    t.eq(
      { params.prompt, params.edit_prompt, params.scheduler },
      { "rainy night", "jazz", "euler" }
    )
    t.eq({ params.edit_n_min, params.edit_n_max, params.retake_seed }, { 0.2, 0.4, nil })
  end)

  t.it("send a file as an absolute path, a track id as an id", function()
    local build = require("lofi.generate_params").build
    local home = vim.uv.os_homedir()
    local params = build({ task = "audio2audio", src = "~/song.wav", ref_strength = 0.4 })
    t.eq(params.ref_path, home .. "/song.wav")
    t.eq(params.ref_strength, 0.4)
    t.eq(params.prompt, require("lofi.config").get().generate.prompt, "the configured prompt")
    params = build({ task = "extend", src = "clips/$HOME.wav" })
    t.eq(params.src_path, vim.fs.joinpath(vim.uv.cwd(), "clips/$HOME.wav"))
    params =
      build({ task = "audio2audio", src = OTHER, prompt = "calm" }, track({ track_id = OTHER }))
    t.eq({ params.ref_track_id, params.prompt }, { OTHER, "calm" })
    t.eq(params.infer_steps, 27, "audio2audio takes only the prompt from its reference")
    params = build({ task = "audio2audio", src = OTHER }, track({ track_id = OTHER }))
    t.eq(params.prompt, "rainy night")
  end)

  t.it("refuse a retake of a track made from a source, pointing to repaint", function()
    local build = require("lofi.generate_params").build
    local _, err = build({ task = "retake", src = ID }, track({ task = "extend" }))
    t.eq(err.name, "INVALID_OPTION")
    t.contains(err.message, "was made by extend from a source and cannot be retaken")
    t.contains(err.message, ":Lofi repaint START END")
  end)

  t.it("refuse bad task options through generate() without a daemon", function()
    local calls = generate_all({
      { task = "repaint", repaint_start = 1, repaint_end = 2 },
      { task = "extend", src = "a.wav", duration = 10 },
      { prompt = "x", extend_left = 5 },
      { task = "edit", src = "a.wav" },
      { task = "retake", src = "a.wav" },
      { task = "remaster", src = "a.wav" },
      { prompt = "x", src = "a.wav" },
      { task = "edit", src = "a.wav", edit_prompt = "x", scheduler = "heun" },
      { task = "extend", src = "a.wav", retake_seed = -1 },
      { task = "extend", src = "" },
    })
    local messages = vim.tbl_map(function(call)
      t.eq(call.err.name, "INVALID_OPTION")
      t.eq(call.track, nil)
      return call.err.message
    end, calls)
    t.eq(messages[1], "task repaint needs `src`: a track id or an audio file")
    t.eq(messages[2], "`duration` is not used by extend: the source sets it")
    t.eq(messages[3], "`extend_left` is for task extend, not text2music")
    t.eq(messages[4], "task edit needs `edit_prompt`, the new prompt")
    t.eq(messages[5], 'retake needs a cached track id as `src`, got "a.wav"')
    t.contains(messages[6], '`task` must be one of "text2music", "retake"')
    t.eq(messages[7], "`src` is for the tasks retake, repaint, extend, audio2audio and edit")
    t.eq(messages[8], 'task edit runs with the euler scheduler only, got "heun"')
    t.eq(messages[9], "`retake_seed` must be a non-negative integer, got -1")
    t.eq(messages[10], "`src` must not be empty: give a track id or an audio file")
    t.eq(require("lofi.client").pid(), nil, "no daemon was started")
  end)
end)

t.describe("variant", function()
  t.it("is sent with every generation once set, and cleared with none", function()
    local build = require("lofi.generate_params").build
    t.eq(build("x").variant, nil)
    require("lofi").setup({ generate = { variant = "chill" } })
    t.eq(build("x").variant, "chill")
    t.eq(build({ prompt = "x", variant = "none" }).variant, nil)
    t.eq(build({ prompt = "x", variant = "" }).variant, nil)
    t.eq(
      require("lofi.commands").parse_generate({ "x", "variant=" }),
      { prompt = "x", variant = "" }
    )
    local messages = t.capture_notify()
    vim.cmd("Lofi config variant")
    t.eq(messages[1].msg, "[lofi] variant: chill")
    vim.cmd("Lofi config variant none")
    t.eq(messages[2].msg, "[lofi] variant: none")
    t.eq(require("lofi.config").get().generate.variant, nil)
    t.eq(build("x").variant, nil)
    t.raises(function()
      require("lofi").setup({ generate = { variant = 3 } })
    end, "`generate.variant` must be a string, got 3")
  end)

  t.it("is checked against the variants the daemon lists", function()
    require("lofi").backends = function(cb)
      cb(nil, { { name = "ace-step", status = "ready", variants = { "chill" } } })
    end
    local messages = t.capture_notify()
    vim.cmd("Lofi config variant jazz")
    t.eq(messages[1].level, vim.log.levels.ERROR)
    t.contains(messages[1].msg, 'INVALID_OPTION: unknown variant "jazz" (available: chill)')
    t.eq(require("lofi.config").get().generate.variant, nil)
    vim.cmd("Lofi config variant chill")
    t.eq(messages[2].msg, "[lofi] variant: chill")
    t.eq(require("lofi.config").get().generate.variant, "chill")
  end)
end)
