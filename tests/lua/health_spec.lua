-- :checkhealth lofi against the real daemon.
local t = require("lofi_test")

--- Run `:checkhealth lofi` and return the report's lines.
---@return string
local function checkhealth()
  vim.cmd("checkhealth lofi")
  local buf = vim.api.nvim_get_current_buf()
  t.eq(vim.bo[buf].filetype, "checkhealth")
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n")
end

---@param report string
---@param level "OK"|"WARNING"|"ERROR"
---@param text string
local function has_line(report, level, text)
  for line in vim.gsplit(report, "\n", { plain = true }) do
    if line:find(level, 1, true) and line:find(text, 1, true) then
      return true
    end
  end
  error(string.format("no %s line with %q in:\n%s", level, text, report), 2)
end

t.describe(":checkhealth lofi", function()
  t.it("reports the daemon and the models as OK with the tiny models", function()
    require("lofi").setup(t.config())
    local report = checkhealth()
    has_line(report, "OK", "Neovim " .. tostring(vim.version()))
    has_line(report, "OK", "daemon command: ")
    has_line(report, "OK", "answered ping")
    has_line(report, "OK", "ONNX Runtime providers: ")
    has_line(report, "OK", "ace-step models installed (in use): ace-step-v1")
    t.contains(report, "backend in use: ace-step (the daemon's default)")
    t.contains(report, "daemon log: ")
    t.ok(not report:find("ERROR", 1, true), "no errors:\n" .. report)
  end)

  t.it("gives the remedy when the models are missing", function()
    require("lofi").setup(t.config({ daemon = { models_dir = t.tmpdir() } }))
    local report = checkhealth()
    has_line(report, "OK", "answered ping")
    has_line(report, "ERROR", "ace-step models are not installed (in use)")
    t.contains(report, ":Lofi setup ace-step")
  end)

  t.it("names the configured backend and how to install it", function()
    require("lofi").setup(t.config({ generate = { backend = "ace-step-1.5" } }))
    local report = checkhealth()
    t.contains(report, "backend in use: ace-step-1.5 (generate.backend)")
    has_line(report, "OK", "ace-step models installed: ace-step-v1")
    has_line(report, "ERROR", "ace-step-1.5 models are not installed (in use)")
    t.contains(report, ":Lofi setup ace-step-1.5")
  end)

  t.it("gives the remedy when the daemon cannot be found", function()
    require("lofi").setup(t.config({ daemon = { cmd = { "/nonexistent/lofi-daemon" } } }))
    local report = checkhealth()
    has_line(report, "ERROR", "is not an executable")
    t.contains(report, require("lofi.health").BUILD)
  end)

  t.it("says how to install a player when none is found", function()
    local saved = vim.env.PATH
    vim.env.PATH = t.tmpdir() -- no player in it
    local ok, report = pcall(function()
      require("lofi").setup(t.config({ daemon = { cmd = { "/nonexistent/lofi-daemon" } } }))
      return checkhealth()
    end)
    vim.env.PATH = saved
    assert(ok, report)
    has_line(report, "WARNING", "no audio player found (tried mpv, ffplay")
    t.contains(report, "sudo apt install mpv")
    t.contains(report, "brew install mpv")
    t.contains(report, "player.cmd")
  end)

  t.it("reports a configured player that is missing", function()
    require("lofi").setup(t.config({ player = { cmd = { "/nonexistent/player" } } }))
    local report = checkhealth()
    has_line(report, "ERROR", 'player.cmd[1] "/nonexistent/player" is not an executable')
  end)
end)
