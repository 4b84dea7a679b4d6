-- :Lofi setup through the real daemon: a local checkpoint (one real export), and the download
-- prompt against the fake hub that tests/test_nvim.py serves (answered no, then yes + cancel).
local t = require("lofi_test")

--- Answer vim.ui.select with the choice at `index` (nil: dismiss); records every prompt.
---@param index integer?
---@return {prompt: string, items: string[]}[]
local function stub_select(index)
  local asked = {}
  vim.ui.select = function(items, opts, on_choice)
    table.insert(asked, { prompt = opts.prompt, items = items })
    vim.schedule(function()
      on_choice(index and items[index] or nil, index)
    end)
  end
  return asked
end

--- Options whose model directory does not exist yet.
---@return table cfg
---@return string models
local function empty_models_config()
  local models = vim.fs.joinpath(t.tmpdir(), "ace-step")
  return t.config({ daemon = { models_dir = models } }), models
end

--- The size of the tiny checkpoint the fake hub serves.
---@return integer
local function checkpoint_bytes()
  local root, total = t.env("LOFI_TEST_CHECKPOINT"), 0
  for name, kind in vim.fs.dir(root, { depth = 10 }) do
    if kind == "file" then
      total = total + vim.uv.fs_stat(vim.fs.joinpath(root, name)).size
    end
  end
  return total
end

local original_select = vim.ui.select

t.describe(":Lofi setup arguments", function()
  t.it("reads the backend, checkpoint=DIR and the flags, and names a bad argument", function()
    local commands = require("lofi.commands")
    t.eq(commands.parse_setup({}), { backend = "ace-step" })
    t.eq(
      commands.parse_setup({ "ace-step", "checkpoint=/tmp/ck", "force", "yes" }),
      { backend = "ace-step", checkpoint = "/tmp/ck", force = true, yes = true }
    )
    local opts, err = commands.parse_setup({ "ace-step", "checkpoint=" })
    t.eq(opts, nil)
    t.contains(err, "checkpoint=")
    opts, err = commands.parse_setup({ "ace-step", "now" })
    t.eq(opts, nil)
    t.contains(err, '"now"')
    t.eq(
      commands.parse_setup({ "ace-step-1.5", "precision=fp16" }),
      { backend = "ace-step-1.5", precision = "fp16" }
    )
    opts, err = commands.parse_setup({ "ace-step", "precision=bf16" })
    t.eq(opts, nil)
    t.contains(err, "auto, fp16, fp32")
  end)
end)

t.describe(":Lofi setup", function()
  t.after_each(function()
    vim.ui.select = original_select
  end)

  t.it("installs a local checkpoint, fires LofiSetupComplete and the backend is ready", function()
    local cfg, models = empty_models_config()
    local lofi = require("lofi")
    lofi.setup(cfg)
    local asked = stub_select(1)
    local messages = t.capture_notify()
    local seen =
      t.record_user_events({ "LofiSetupProgress", "LofiSetupComplete", "LofiSetupError" })
    local checkpoint = vim.fn.fnameescape(t.env("LOFI_TEST_CHECKPOINT"))
    vim.cmd("Lofi setup ace-step checkpoint=" .. checkpoint)
    t.wait(600000, function()
      return #seen > 0 and seen[#seen].pattern ~= "LofiSetupProgress"
    end, "the end of the setup")
    local last = seen[#seen]
    t.eq(last.pattern, "LofiSetupComplete", vim.inspect(last.data))
    t.eq(last.data.models_dir, models)
    t.eq(last.data.already_installed, false)
    t.eq(#asked, 0, "a local checkpoint needs no download, so no question")
    local phases = {}
    for _, item in ipairs(seen) do
      if item.pattern == "LofiSetupProgress" and phases[#phases] ~= item.data.phase then
        table.insert(phases, item.data.phase)
      end
    end
    t.eq(phases, { "export", "verify" })
    t.ok(vim.uv.fs_stat(vim.fs.joinpath(models, "manifest.json")), "the manifest is installed")
    t.wait(5000, function()
      return #messages >= 2
    end, "the final message")
    t.contains(messages[#messages].msg, "ace-step installed in " .. models)
    local backends
    lofi.backends(function(_, result)
      backends = result
    end)
    t.wait(30000, function()
      return backends ~= nil
    end, "backends()")
    t.eq(backends[1].status, "ready")
  end)

  t.it("asks before downloading, showing the size in GB; no installs nothing", function()
    local cfg, models = empty_models_config()
    local lofi = require("lofi")
    lofi.setup(cfg)
    local asked = stub_select(2)
    local result
    lofi.install({ backend = "ace-step" }, function(err, done)
      result = { err = err, done = done }
    end)
    t.wait(120000, function()
      return result ~= nil
    end, "the install() callback")
    t.eq(#asked, 1, "asked once")
    t.contains(asked[1].prompt, string.format("download %.2f GB", checkpoint_bytes() / 1e9))
    t.contains(asked[1].prompt, "GB free")
    t.contains(asked[1].prompt, models)
    t.eq(result.done, nil)
    t.eq(result.err.code, require("lofi.errors").daemon.SETUP_FAILED)
    t.contains(result.err.message, "declined")
    t.eq(vim.uv.fs_stat(models), nil, "no model directory")
    t.eq(vim.uv.fs_stat(models .. ".download"), nil, "nothing downloaded")
    t.eq(lofi.installing(), false)
  end)

  t.it("yes starts the download; :Lofi setup cancel stops it and installs nothing", function()
    local cfg, models = empty_models_config()
    local lofi = require("lofi")
    lofi.setup(cfg)
    local asked = stub_select(1)
    local seen = t.record_user_events({ "LofiSetupProgress", "LofiSetupCancelled" })
    local result
    lofi.install({}, function(err)
      result = { err = err }
    end)
    t.wait(120000, function()
      return #seen > 0
    end, "the first progress report")
    t.eq(#asked, 1)
    t.eq(seen[1].data.phase, "download")
    vim.cmd("Lofi setup cancel")
    t.wait(120000, function()
      return result ~= nil
    end, "the install() callback")
    t.eq(result.err.code, require("lofi.errors").daemon.GENERATION_CANCELLED)
    t.eq(seen[#seen].pattern, "LofiSetupCancelled")
    t.eq(vim.uv.fs_stat(models), nil, "no model directory")
  end)
end)
