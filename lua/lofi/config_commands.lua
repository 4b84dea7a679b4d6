--- `:Lofi config backend [{name} | default]` and `:Lofi config variant [{name} | none]`: show or
--- change the backend (saved for later sessions, `lofi.backend`) and the LoRA variant (this
--- session only). Names are checked against the daemon's `backends.list`.
local backend_choice = require("lofi.backend")
local config = require("lofi.config")
local errors = require("lofi.errors")
local user = require("lofi.user")

local M = {}

local notify, notify_error = user.notify, user.notify_error

M.USAGE = "config backend [{name}|default] | config variant [{name}|none]"

--- `:Lofi config variant [{name}|none]`: show, set or clear the LoRA variant sent with every
--- generation. When the daemon lists the backend's variants, the name is checked against them.
---@param name? string
function M.variant(name)
  if not name then
    notify("variant: " .. (config.get().generate.variant or "none"))
    return
  end
  if name == "none" then
    config.set("generate", "variant", nil)
    notify("variant: none")
    return
  end
  require("lofi").backends(function(err, backends)
    if err then
      notify_error(err)
      return
    end
    local in_use = backend_choice.in_use(backends)
    for _, backend in ipairs(backends or {}) do
      local known = backend.variants
      if backend.name == in_use and type(known) == "table" then
        if not vim.list_contains(known, name) then
          local listed = #known > 0 and table.concat(known, ", ") or "none installed"
          local message = string.format("unknown variant %q (available: %s)", name, listed)
          notify_error(errors.new(errors.client.INVALID_OPTION, message))
          return
        end
      end
    end
    config.set("generate", "variant", name)
    notify("variant: " .. name)
  end)
end

--- Show the backend in use and each backend's install status.
local function show_backend()
  require("lofi").backends(function(err, backends)
    if err then
      notify("backend: " .. backend_choice.describe() .. " (daemon: " .. err.message .. ")")
      return
    end
    notify(
      string.format(
        "backend: %s\nbackends: %s",
        backend_choice.describe(backends),
        backend_choice.summary(backends or {})
      )
    )
  end)
end

--- Choose `name` for this session and save it for later ones.
---@param entry lofi.Backend the daemon's entry for it
local function choose(entry)
  local name = entry.name
  local before, source = backend_choice.configured()
  local _, saved_err = backend_choice.saved()
  config.set("generate", "backend", name)
  local ok, save_err = backend_choice.save(name)
  local text = string.format("backend: %s (%s)", name, tostring(entry.status or "?"))
  if entry.status ~= "ready" then
    text = text .. string.format("; install it with :Lofi setup %s", name)
  end
  if not ok then
    notify(text .. "\nfor this session only: " .. tostring(save_err), vim.log.levels.WARN)
    return
  end
  if source == "option" and before ~= name and not saved_err then
    text = text
      .. string.format(
        "\nsaved, but setup() sets generate.backend = %q, which new sessions use",
        before
      )
  end
  notify(text)
end

--- `:Lofi config backend [{name}|default]`.
---@param name? string
function M.backend(name)
  if not name then
    show_backend()
    return
  end
  if name == "default" then
    config.set("generate", "backend", nil)
    local ok, err = backend_choice.save(nil)
    if not ok then
      notify_error(errors.new(errors.client.INVALID_OPTION, tostring(err)))
      return
    end
    notify("backend: the daemon's default (the saved choice is removed)")
    return
  end
  require("lofi").backends(function(err, backends)
    if err then
      notify_error(err)
      return
    end
    local names = {}
    for _, entry in ipairs(backends or {}) do
      names[#names + 1] = tostring(entry.name)
      if entry.name == name then
        choose(entry)
        return
      end
    end
    notify_error(
      errors.new(
        errors.daemon.INVALID_BACKEND,
        string.format("unknown backend %q (available: %s)", name, table.concat(names, ", "))
      )
    )
  end)
end

--- Run `:Lofi config` with its arguments.
---@param args string[]
function M.run(args)
  if args[1] == "variant" then
    M.variant(args[2])
  elseif args[1] == "backend" then
    M.backend(args[2])
  else
    notify("usage: :Lofi " .. M.USAGE, vim.log.levels.ERROR)
  end
end

--- Completion of `:Lofi config`.
---@param args string[] the words before the one completed, "config" first
---@return string[]
function M.complete(_, args)
  if #args <= 1 then
    return { "backend", "variant" }
  end
  if args[2] == "variant" then
    return { "none" }
  end
  if #args > 2 then
    return {}
  end
  -- A running daemon that has not listed its backends yet is asked (briefly); none is started.
  if not backend_choice.listed() and require("lofi.client").pid() then
    local err, result = require("lofi.rpc").request_sync("backends.list", nil, 500)
    if not err then
      backend_choice.remember(result)
    end
  end
  local names = backend_choice.names()
  names[#names + 1] = "default"
  return names
end

return M
