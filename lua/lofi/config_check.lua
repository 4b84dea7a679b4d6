--- The value checks of the option schema (`lofi.config`): a string names one or more types
--- joined by "|", with a trailing "?" for "may be nil"; `{ one_of = {...}, optional? }` lists
--- the allowed values. Messages name the option and show the value that was given.
local M = {}

local type_labels = {
  string = "a string",
  boolean = "true or false",
  number = "a number",
  nonneg = "a non-negative integer",
  posint = "a positive integer",
  list = "a list of strings",
  cmd = "a non-empty list of strings",
  map = "a table of string values",
  table = "a table",
  ["false"] = "false",
}

---@param value any
---@return boolean
local function is_integer(value)
  return type(value) == "number" and value == math.floor(value) and value == value
end

---@param value any
---@return boolean
local function is_string_list(value)
  if type(value) ~= "table" or not vim.islist(value) then
    return false
  end
  for _, item in ipairs(value) do
    if type(item) ~= "string" then
      return false
    end
  end
  return true
end

---@type table<string, fun(value: any): boolean>
local checks = {
  string = function(v)
    return type(v) == "string"
  end,
  boolean = function(v)
    return type(v) == "boolean"
  end,
  number = function(v)
    return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
  end,
  nonneg = function(v)
    return is_integer(v) and v >= 0
  end,
  posint = function(v)
    return is_integer(v) and v >= 1
  end,
  list = is_string_list,
  cmd = function(v)
    return is_string_list(v) and #v > 0
  end,
  map = function(v)
    if type(v) ~= "table" then
      return false
    end
    for key, item in pairs(v) do
      if type(key) ~= "string" or type(item) ~= "string" then
        return false
      end
    end
    return true
  end,
  table = function(v)
    return type(v) == "table"
  end,
  ["false"] = function(v)
    return v == false
  end,
}

--- A value as a message shows it (strings quoted).
---@param value any
---@return string
function M.show(value)
  if type(value) == "string" then
    return string.format("%q", value)
  end
  return vim.inspect(value, { newline = " ", indent = "" })
end

--- Check one value against its schema entry.
---@param name string dotted option name, for the message
---@param spec string|table
---@param value any
---@return string? error
function M.check_value(name, spec, value)
  if type(spec) == "table" then
    if (value == nil and spec.optional) or vim.list_contains(spec.one_of, value) then
      return nil
    end
    local allowed = vim.tbl_map(M.show, spec.one_of)
    return string.format(
      "`%s` must be one of %s, got %s",
      name,
      table.concat(allowed, ", "),
      M.show(value)
    )
  end
  local optional = spec:sub(-1) == "?"
  local kinds = vim.split(optional and spec:sub(1, -2) or spec, "|", { plain = true })
  if value == nil and optional then
    return nil
  end
  for _, kind in ipairs(kinds) do
    if checks[kind](value) then
      return nil
    end
  end
  local wanted = vim.tbl_map(function(kind)
    return type_labels[kind]
  end, kinds)
  return string.format("`%s` must be %s, got %s", name, table.concat(wanted, " or "), M.show(value))
end

return M
