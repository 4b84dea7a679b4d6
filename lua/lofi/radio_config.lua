--- The `radio` section of the options: its defaults, its schema (`lofi.config` checks the
--- types) and the ranges `setup()` checks on top. The ranges mirror the daemon's
--- (`lofi_daemon/radio/config.py`), which checks them again, with the combinations (context at
--- most the segment, the crossfade at most half the context), when a station starts.
local M = {}

---@type lofi.RadioConfig
M.defaults = {
  prompt = "lofi jazzhop, rhodes piano, vinyl crackle, 80 bpm",
  segment = 30,
  context = 30,
  crossfade = 1.5,
  variation = 4,
  volume = nil,
  mpv_args = {},
}

M.schema = {
  prompt = "string",
  segment = "number",
  context = "number",
  crossfade = "number",
  variation = "nonneg",
  volume = "number?",
  mpv_args = "list",
}

--- Allowed ranges, by option: {min, max}.
---@type table<string, {[1]: number, [2]: number}>
M.ranges = {
  segment = { 5, 120 },
  context = { 5, 120 },
  crossfade = { 0.1, 5 },
  variation = { 0, 100 },
  volume = { 0, 100 },
}

--- Check the ranges of a `radio` section whose types are already checked.
---@param section table
---@return string? error naming the option
function M.check(section)
  local names = vim.tbl_keys(M.ranges)
  table.sort(names)
  for _, name in ipairs(names) do
    local value, range = section[name], M.ranges[name]
    if type(value) == "number" and (value < range[1] or value > range[2]) then
      return string.format(
        "`radio.%s` must be between %s and %s, got %s",
        name,
        tostring(range[1]),
        tostring(range[2]),
        tostring(value)
      )
    end
  end
  if type(section.prompt) == "string" and vim.trim(section.prompt) == "" then
    return "`radio.prompt` must not be empty"
  end
  return nil
end

return M
