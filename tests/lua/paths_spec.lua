-- User paths are literal: only a leading "~" is expanded (no shell, no %, no wildcards).
local t = require("lofi_test")

t.describe("paths", function()
  t.it("expands only a leading ~", function()
    local paths = require("lofi.paths")
    local home = vim.uv.os_homedir()
    t.eq(paths.expand("~"), home)
    t.eq(paths.expand("~/models"), home .. "/models")
    t.eq(paths.expand("/a/~/b"), "/a/~/b")
    t.eq(paths.expand("~user/x"), "~user/x")
    t.eq(paths.expand("$HOME/x"), "$HOME/x")
    t.eq(paths.expand("/tmp/*.wav"), "/tmp/*.wav")
    t.eq(paths.absolute("rel/x"), vim.fs.joinpath(vim.uv.cwd(), "rel/x"))
    t.eq(paths.absolute("-x"), vim.fs.joinpath(vim.uv.cwd(), "-x"))
  end)

  t.it("passes daemon paths with a backtick, % and # literally, running nothing", function()
    local dir = t.tmpdir()
    local marker = vim.fs.joinpath(dir, "ran")
    local hostile = vim.fs.joinpath(dir, "m`touch " .. marker .. "`%#")
    local cfg = t.config({
      daemon = {
        models_dir = hostile,
        cache_dir = hostile .. "-cache",
        log_file = hostile .. ".log",
      },
    })
    require("lofi").setup(cfg)
    vim.cmd.edit(vim.fs.joinpath(dir, "current.txt")) -- what % would become
    local argv = assert(require("lofi.client").command(require("lofi.config").get()))
    local function after(flag)
      for i, arg in ipairs(argv) do
        if arg == flag then
          return argv[i + 1]
        end
      end
    end
    t.eq(after("--models"), hostile)
    t.eq(after("--cache-dir"), hostile .. "-cache")
    t.eq(after("--log-file"), hostile .. ".log")
    t.eq(vim.uv.fs_stat(marker), nil, "the backtick command did not run")
  end)

  t.it("sends checkpoint= literally (absolute, ~ expanded)", function()
    local paths = require("lofi.paths")
    local literal = "/ck/`echo x`/%/#"
    t.eq(paths.absolute(literal), literal)
    t.eq(paths.absolute("~/ck%"), vim.uv.os_homedir() .. "/ck%")
  end)
end)
