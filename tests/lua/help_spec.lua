-- :help lofi for a plugin added to 'runtimepath' by hand (no plugin manager ran :helptags).
local t = require("lofi_test")

--- Copy the plugin's runtime folders (not doc/tags) into a new folder.
---@return string root
local function plugin_copy()
  local root = t.tmpdir()
  for _, dir in ipairs({ "plugin", "lua/lofi", "doc" }) do
    vim.fn.mkdir(vim.fs.joinpath(root, dir), "p")
    for name, kind in vim.fs.dir(vim.fs.joinpath(t.root, dir)) do
      if kind == "file" and name ~= "tags" then
        local from = vim.fs.joinpath(t.root, dir, name)
        assert(vim.uv.fs_copyfile(from, vim.fs.joinpath(root, dir, name)))
      end
    end
  end
  return root
end

t.describe(":help lofi", function()
  t.it("works in a fresh Neovim that only added the plugin to 'runtimepath'", function()
    local root = plugin_copy()
    t.eq(vim.uv.fs_stat(vim.fs.joinpath(root, "doc", "tags")), nil)
    local show = "lua io.stdout:write(vim.fn.expand('%:t') .. '|' .. vim.fn.getline('.') .. '\\n')"
    local result = vim
      .system({
        vim.v.progpath,
        "--headless",
        "--clean",
        "--cmd",
        "set rtp^=" .. vim.fn.fnameescape(root),
        "-c",
        "help lofi",
        "-c",
        show,
        "-c",
        "help lofi-config-paths",
        "-c",
        show,
        "-c",
        "qa!",
      }, { text = true })
      :wait(60000)
    t.eq(result.code, 0, "nvim exit code; stderr: " .. tostring(result.stderr))
    local lines = vim.split(vim.trim(result.stdout), "\n", { plain = true })
    t.eq(#lines, 2, "two help lookups; output: " .. result.stdout .. tostring(result.stderr))
    t.contains(lines[1], "lofi.txt|")
    t.contains(lines[1], "*lofi*")
    t.contains(lines[2], "lofi.txt|")
    t.contains(lines[2], "*lofi-config-paths*")
    t.ok(vim.uv.fs_stat(vim.fs.joinpath(root, "doc", "tags")), "doc/tags was generated")
  end)

  t.it("leaves existing tags alone", function()
    local doc = vim.fs.joinpath(t.tmpdir(), "doc")
    vim.fn.mkdir(doc, "p")
    assert(vim.uv.fs_copyfile(vim.fs.joinpath(t.root, "doc", "lofi.txt"), doc .. "/lofi.txt"))
    vim.fn.writefile({ "lofi\tlofi.txt\t/*lofi*" }, doc .. "/tags")
    t.eq(require("lofi.helptags").ensure(doc), false)
    t.eq(vim.fn.readfile(doc .. "/tags"), { "lofi\tlofi.txt\t/*lofi*" })
  end)
end)
