-- Hostile input and state changes the plugin must survive without a daemon (issue 10):
-- prompts that are not one line or not UTF-8, malformed notifications, unknown :Lofi generate
-- keys, statusline redraws, remedies that name setup() options.
local t = require("lofi_test")

local original_redrawstatus = vim.cmd.redrawstatus

--- Replace `vim.cmd.redrawstatus` (until `restore_redraws`); returns the call counter.
---@return {count: integer}
local function spy_redraws()
  local calls = { count = 0 }
  vim.cmd.redrawstatus = function()
    calls.count = calls.count + 1
  end
  return calls
end

local function restore_redraws()
  vim.cmd.redrawstatus = original_redrawstatus
end

--- Answer `generate` requests with `reply` instead of sending them (no daemon).
---@param reply table
local function stub_generate(reply)
  local rpc = require("lofi.rpc")
  local original = rpc.request
  rpc.request = function(method, params, cb, opts)
    if method ~= "generate" then
      return original(method, params, cb, opts)
    end
    vim.schedule(function()
      cb(nil, vim.deepcopy(reply))
    end)
    return 0
  end
end

--- Collect the callback calls of one `lofi.generate`.
local function generate(options)
  local calls = {}
  require("lofi").generate(options, function(err, track)
    table.insert(calls, { err = err, track = track })
  end)
  return calls
end

t.describe("text", function()
  t.it("tells UTF-8 from other bytes", function()
    local text = require("lofi.text")
    for _, good in ipairs({ "", "rain", "café", "雨の夜", "🎹 lofi", "a\nb" }) do
      t.ok(text.is_utf8(good), "valid: " .. vim.inspect(good))
    end
    local bad =
      { "\xff", "caf\xe9", "\xc3", "\xe2\x82", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80" }
    for _, item in ipairs(bad) do
      t.ok(not text.is_utf8(item), "invalid: " .. vim.inspect(item))
    end
    t.eq(text.one_line("rain\n\nnight\r\tpiano"), "rain night piano")
  end)
end)

t.describe("prompts", function()
  t.it("shows a multi-line prompt on one line and draws the float", function()
    local progress = require("lofi.progress")
    local lines = progress.render({ prompt = "rain\nnight", status = "queued" }, 40)
    t.eq(lines[1], "lofi: rain night")
    progress.update({ prompt = "rain\nnight", status = "running", percent = 10 })
    t.ok(progress.win(), "the float opened")
    progress.close()
    t.eq(require("lofi.status").text(), "")
  end)

  t.it("gives INVALID_PROMPT at once for a prompt that is not UTF-8, sending nothing", function()
    local errors = require("lofi.errors")
    local calls = generate({ prompt = "rain \xff night" })
    local from_string = generate("\xff")
    t.wait(2000, function()
      return #calls > 0 and #from_string > 0
    end, "the callbacks")
    t.sleep(50)
    t.eq({ #calls, #from_string }, { 1, 1 })
    for _, call in ipairs({ calls[1], from_string[1] }) do
      t.eq(call.err.code, errors.daemon.INVALID_PROMPT)
      t.contains(call.err.message, "not valid UTF-8")
      t.eq(call.track, nil)
    end
    t.eq(require("lofi.client").pid(), nil, "no daemon was started")
    t.eq(require("lofi.rpc").pending_count(), 0, "no request is waiting")
  end)

  t.it("rejects a :Lofi generate prompt that is not UTF-8 with a message", function()
    local messages = t.capture_notify()
    vim.cmd("Lofi generate rain \xff")
    t.wait(2000, function()
      return #messages > 0
    end, "the message")
    t.contains(t.joined(messages), "INVALID_PROMPT: the prompt is not valid UTF-8")
    t.eq(require("lofi.client").pid(), nil, "no daemon was started")
  end)
end)

t.describe("malformed notifications", function()
  for _, case in ipairs({
    { name = "a string", value = "long" },
    { name = "null", value = vim.NIL },
    { name = "NaN", value = 0 / 0 },
    { name = "a table", value = { 1 } },
  }) do
    t.it("calls back once for a cache hit whose duration_sec is " .. case.name, function()
      require("lofi").setup({ notify = true, player = { autoplay = false } })
      local messages = t.capture_notify()
      stub_generate({ track_id = "abc123", status = "cached", position = 0 })
      local calls = generate({ prompt = "rain" })
      t.wait(2000, function()
        return #require("lofi").active() == 1 and require("lofi").active()[1].track_id ~= nil
      end, "the accepted request")
      local ok = pcall(require("lofi.routing").route, "generation_complete", {
        track_id = "abc123",
        prompt = "rain",
        path = "/nonexistent/abc123.wav",
        duration_sec = case.value,
        cached = true,
      })
      t.ok(ok, "routing never raises")
      t.wait(2000, function()
        return #calls > 0
      end, "the callback")
      t.sleep(50)
      t.eq(#calls, 1)
      t.eq(calls[1].err, nil)
      t.eq(calls[1].track.track_id, "abc123")
      t.contains(t.joined(messages), "ready: rain")
      t.eq(require("lofi").active(), {})
    end)
  end
end)

t.describe(":Lofi generate keys", function()
  t.it("names the valid keys for an unknown key=value word", function()
    local messages = t.capture_notify()
    vim.cmd("Lofi generate rain durration=6")
    local text = t.joined(messages)
    t.contains(text, "INVALID_OPTION: unknown key `durration`")
    t.contains(
      text,
      "valid keys: backend, bpm, duration, format, key, language, lyrics, scheduler, seed, "
        .. "shift, steps, time_signature, variant;"
    )
    t.eq(require("lofi.client").pid(), nil, "no daemon was started")
  end)

  t.it("keeps '=' words that are not keys, and every word after --, in the prompt", function()
    local parse = require("lofi.commands").parse_generate
    t.eq(parse({ "rain", "4=4", "a+b=c", "=" }), { prompt = "rain 4=4 a+b=c =" })
    t.eq(
      parse({ "duration=10", "rain", "--", "mood=calm", "--", "seed=2" }),
      { duration = 10, prompt = "rain mood=calm -- seed=2" }
    )
    local _, err = parse({ "rain", "mood=calm" })
    t.contains(err, "after --")
  end)
end)

t.describe("statusline", function()
  t.after_each(restore_redraws)

  t.it("redraws when a generation is requested, progresses and is cancelled", function()
    require("lofi").setup({ notify = false })
    local redraws = spy_redraws()
    stub_generate({ track_id = "abc123", status = "queued", position = 1 })
    local calls = generate({ prompt = "rain" })
    t.wait(2000, function()
      return redraws.count > 0
    end, "a redraw for the request")
    t.wait(2000, function()
      return require("lofi").active()[1].track_id ~= nil
    end, "the accepted request")
    local routing = require("lofi.routing")
    routing.route("generation_progress", { track_id = "abc123", percent = 4 })
    t.eq(require("lofi.status").text(), "♪ 4%")
    t.sleep(50)
    local before = redraws.count
    routing.route("generation_cancelled", { track_id = "abc123" })
    t.eq(require("lofi.status").text(), "")
    t.wait(2000, function()
      return redraws.count > before
    end, "a redraw after the cancel")
    t.eq(calls[1].err.name, "GENERATION_CANCELLED")
  end)

  t.it("shows setup progress and redraws on each step", function()
    t.capture_notify()
    local redraws = spy_redraws()
    local rpc = require("lofi.rpc")
    rpc.request = function()
      return 0
    end
    require("lofi").install({ yes = true })
    local routing = require("lofi.routing")
    routing.route("setup_progress", { backend = "ace-step", phase = "export", percent = 40 })
    t.eq(require("lofi.status").text(), "⚙ setup 40% export")
    t.wait(2000, function()
      return redraws.count > 0
    end, "a redraw for the setup step")
    local before = redraws.count
    routing.route("setup_error", { backend = "ace-step", code = -32016, message = "failed" })
    t.eq(require("lofi.status").text(), "")
    t.wait(2000, function()
      return redraws.count > before
    end, "a redraw after the setup error")
  end)

  t.it("redraws when the player exits", function()
    local file = vim.fs.joinpath(t.tmpdir(), "track.wav")
    vim.fn.writefile({ "not audio" }, file)
    -- A player that plays for a moment, then ends by itself.
    require("lofi").setup({ player = { cmd = { "sh", "-c", "sleep 0.5", "sh" } } })
    local lofi = require("lofi")
    local redraws = spy_redraws()
    lofi.play(file)
    t.wait(5000, function()
      return redraws.count > 0
    end, "a redraw for the start")
    local before = redraws.count
    t.wait(10000, function()
      return require("lofi.player").current() == nil
    end, "the player to exit")
    t.eq(lofi.status(), "")
    t.wait(2000, function()
      return redraws.count > before
    end, "a redraw for the exit")
  end)
end)

t.describe("remedies", function()
  t.it("name setup() options, not the daemon's flags", function()
    local errors = require("lofi.errors")
    local err = errors.from_response({
      code = errors.daemon.MODEL_NOT_FOUND,
      message = "no models installed at /x (missing manifest.json)",
      data = {
        remedy = "Run :Lofi setup ace-step (or lofi-daemon setup ace-step), or pass --models DIR.",
      },
    })
    t.eq(
      err.remedy,
      "Run :Lofi setup ace-step (or lofi-daemon setup ace-step), or set daemon.models_dir in setup()."
    )
    local note = errors.from_notification({
      track_id = "a",
      code = errors.daemon.SETUP_FAILED,
      message = "x",
      remedy = "Choose a new or empty folder with --models DIR (or $LOFI_MODELS_DIR).",
    })
    t.eq(note.remedy, "Choose a new or empty folder with daemon.models_dir (or $LOFI_MODELS_DIR).")
  end)
end)
