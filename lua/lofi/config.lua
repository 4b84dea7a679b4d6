--- Options: defaults, validation and merging.
---
--- `setup()` validates every option against `schema` (unknown names and wrong types raise an
--- error that names the option), then merges the user's sections over the defaults. Every call
--- starts again from the defaults, so calling it twice is safe.
local M = {}

---@type lofi.Config
local defaults = {
  daemon = {
    cmd = nil,
    remote = nil,
    models_dir = nil,
    cache_dir = nil,
    log_file = nil,
    args = {},
    env = nil,
    request_timeout_ms = 15000,
    shutdown_timeout_ms = 3000,
    backoff_ms = 500,
    max_backoff_ms = 30000,
  },
  generate = {
    prompt = "lofi hip hop, mellow rhodes piano, vinyl crackle, 80 bpm",
    duration = 30,
    steps = 27,
    seed = nil,
    scheduler = nil,
    guidance_scale = nil,
    format = "wav",
    backend = nil,
    variant = nil,
  },
  player = {
    cmd = nil,
    autoplay = true,
    loop = false,
  },
  progress = {
    enabled = true,
    position = "top-right",
    width = 44,
    border = "rounded",
  },
  radio = require("lofi.radio_config").defaults,
  notify = true,
  log = {
    level = "info",
  },
}

local SCHEDULERS = { "euler", "heun", "pingpong" }
local FORMATS = { "wav", "flac", "ogg" }
local POSITIONS = { "top-right", "bottom-right", "top-left", "bottom-left" }
local LOG_LEVELS = { "trace", "debug", "info", "warn", "error", "off" }
local PRIORITIES = { "normal", "high" }

--- Option types. A string names one or more types joined by "|", with a trailing "?" for
--- "may be nil"; `{ one_of = {...}, optional? }` lists the allowed values. Any other table is a
--- section of options.
local schema = {
  daemon = {
    cmd = "cmd?",
    remote = "string|boolean?",
    models_dir = "string?",
    cache_dir = "string?",
    log_file = "string|false?",
    args = "list",
    env = "map?",
    request_timeout_ms = "posint",
    shutdown_timeout_ms = "posint",
    backoff_ms = "nonneg",
    max_backoff_ms = "nonneg",
  },
  generate = {
    prompt = "string",
    duration = "number",
    steps = "posint",
    seed = "nonneg?",
    scheduler = { one_of = SCHEDULERS, optional = true },
    guidance_scale = "number?",
    format = { one_of = FORMATS },
    backend = "string?",
    variant = "string?",
  },
  player = {
    cmd = "cmd?",
    autoplay = "boolean",
    loop = "boolean",
  },
  progress = {
    enabled = "boolean",
    position = { one_of = POSITIONS },
    width = "posint",
    border = "string|table",
  },
  radio = require("lofi.radio_config").schema,
  notify = "boolean",
  log = {
    level = { one_of = LOG_LEVELS },
  },
}

--- Options of a single `generate()` call that are not `generate` defaults: a call takes the
--- `generate` section's options (checked with that section's schema) plus these, and the
--- audio tasks' options (`lofi.task_spec`) and the song options of ACE-Step 1.5
--- (`lofi.song_spec`).
local per_call_generate = vim.tbl_extend("error", {
  priority = { one_of = PRIORITIES },
  play = "boolean",
}, require("lofi.task_spec").options(), require("lofi.song_spec").options())

local show = require("lofi.config_check").show

--- Check one value against its schema entry (`lofi.config_check`).
M.check_value = require("lofi.config_check").check_value

---@param tbl table
---@return string
local function key_list(tbl)
  local keys = vim.tbl_keys(tbl)
  table.sort(keys)
  return table.concat(keys, ", ")
end

--- Validate user options; returns the first problem found, naming the option.
---@param opts any
---@return string? error
function M.validate(opts)
  if opts == nil then
    return nil
  end
  if type(opts) ~= "table" then
    return "options must be a table, got " .. type(opts)
  end
  local names = vim.tbl_keys(opts)
  table.sort(names, function(a, b)
    return tostring(a) < tostring(b)
  end)
  for _, key in ipairs(names) do
    local value = opts[key]
    local spec = schema[key]
    if spec == nil then
      return string.format("unknown option `%s` (valid: %s)", tostring(key), key_list(schema))
    end
    local is_section = type(spec) == "table" and spec.one_of == nil
    if is_section then
      if type(value) ~= "table" then
        return string.format("`%s` must be a table, got %s", key, show(value))
      end
      local fields = vim.tbl_keys(value)
      table.sort(fields, function(a, b)
        return tostring(a) < tostring(b)
      end)
      for _, field in ipairs(fields) do
        local name = key .. "." .. tostring(field)
        if spec[field] == nil then
          return string.format("unknown option `%s` (valid in `%s`: %s)", name, key, key_list(spec))
        end
        local err = M.check_value(name, spec[field], value[field])
        if err then
          return err
        end
      end
      local ranges_err = key == "radio" and require("lofi.radio_config").check(value) or nil
      if ranges_err then
        return ranges_err
      end
    else
      local err = M.check_value(key, spec, value)
      if err then
        return err
      end
    end
  end
  return nil
end

--- Check the options of one `generate()` call: each must be an option of the `generate`
--- section (checked with that section's schema, so a value `setup()` would reject is rejected
--- here too) or a per-call option (`priority`, `play`). Messages name the option as the call
--- does (`scheduler`, not `generate.scheduler`).
---@param opts table
---@return string? error the first problem found
function M.check_generate(opts)
  local names = vim.tbl_keys(opts)
  table.sort(names, function(a, b)
    return tostring(a) < tostring(b)
  end)
  for _, name in ipairs(names) do
    local spec = schema.generate[name] or per_call_generate[name]
    if spec == nil then
      local valid = vim.tbl_extend("error", schema.generate, per_call_generate)
      return string.format("unknown option `%s` (valid: %s)", tostring(name), key_list(valid))
    end
    local err = M.check_value(name, spec, opts[name])
    if err then
      return err
    end
  end
  return nil
end

--- The values an option may take, when the schema lists them ({"euler", "heun", ...}).
---@param section string
---@param field string
---@return string[]? values a copy, nil when the option is not a choice
function M.choices(section, field)
  local spec = schema[section] and schema[section][field]
  if type(spec) == "table" and spec.one_of then
    return vim.deepcopy(spec.one_of)
  end
  return nil
end

--- Merge user options over the defaults (each section key by key; lists are replaced whole).
---@param opts? lofi.UserConfig
---@return lofi.Config
function M.merge(opts)
  local merged = vim.deepcopy(defaults)
  for key, value in pairs(opts or {}) do
    if type(value) == "table" and type(merged[key]) == "table" then
      for field, item in pairs(value) do
        merged[key][field] = vim.deepcopy(item)
      end
    else
      merged[key] = vim.deepcopy(value)
    end
  end
  return merged
end

---@type lofi.Config?
local current = nil

--- Validate and apply options. Raises an error naming the first invalid option.
---@param opts? lofi.UserConfig
---@return lofi.Config
function M.setup(opts)
  local err = M.validate(opts)
  if err then
    error("lofi.setup: " .. err, 0)
  end
  current = M.merge(opts)
  return current
end

--- The options in force (the defaults until `setup()` runs).
---@return lofi.Config
function M.get()
  if current == nil then
    current = M.merge(nil)
  end
  return current
end

--- A copy of the defaults (for the docs and `:checkhealth`).
---@return lofi.Config
function M.defaults()
  return vim.deepcopy(defaults)
end

--- Every option's dotted name ("daemon.cmd", "notify", ...), sorted (the docs test uses it).
---@return string[]
function M.option_names()
  local names = {}
  for key, spec in pairs(schema) do
    if type(spec) == "table" and spec.one_of == nil then
      for field in pairs(spec) do
        names[#names + 1] = key .. "." .. field
      end
    else
      names[#names + 1] = key
    end
  end
  table.sort(names)
  return names
end

--- Change one option at run time, with the same validation as `setup()`.
---@param section string
---@param field string
---@param value any
---@return string? error
function M.set(section, field, value)
  local err = M.validate({ [section] = { [field] = value } })
  if err then
    return err
  end
  M.get()[section][field] = value
  return nil
end

return M
