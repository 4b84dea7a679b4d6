--- The song options of a `generate()` call that ACE-Step 1.5 turbo takes (docs/protocol.md,
--- `generate`): lyrics, their language, tempo, key, time signature and the schedule shift.
--- Data only: the option schema (`lofi.config`), the request builder (`lofi.generate_params`)
--- and `:Lofi generate` (`lofi.generate_args`) read it. The plugin checks the types; the
--- daemon checks the values (a bpm out of range, an unknown key or language) and refuses
--- them, or any of these on a backend without them, with INVALID_PARAMETER naming the field
--- and the backend.
local M = {}

--- The options, by `generate()` name: their type as in the option schema, the daemon
--- parameter each becomes, and the `:Lofi generate` key that sets it.
---@type table<string, {type: string, param: string, key: string}>
M.fields = {
  lyrics = { type = "string", param = "lyrics", key = "lyrics" },
  vocal_language = { type = "string", param = "vocal_language", key = "language" },
  bpm = { type = "posint", param = "bpm", key = "bpm" },
  keyscale = { type = "string", param = "keyscale", key = "key" },
  time_signature = { type = "posint", param = "time_signature", key = "time_signature" },
  shift = { type = "posint", param = "shift", key = "shift" },
}

--- The options for the option schema, by name.
---@return table<string, string>
function M.options()
  local options = {}
  for name, field in pairs(M.fields) do
    options[name] = field.type
  end
  return options
end

return M
