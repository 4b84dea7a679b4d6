-- WAV files for the playback specs (loaded with dofile; not a spec itself).
local M = {}

--- `value` as `bytes` little-endian bytes.
---@param value integer
---@param bytes integer
---@return string
local function le(value, bytes)
  local out = {}
  for i = 1, bytes do
    out[i] = string.char(math.floor(value / 256 ^ (i - 1)) % 256)
  end
  return table.concat(out)
end

--- Write a real WAV file: `seconds` of a quiet 440 Hz tone, 8 kHz mono 16-bit.
---@param path string
---@param seconds number
---@return string path
function M.write(path, seconds)
  local rate = 8000
  local frames = math.floor(rate * seconds)
  local samples = {}
  for i = 0, frames - 1 do
    local value = math.floor(2000 * math.sin(2 * math.pi * 440 * i / rate))
    samples[#samples + 1] = le(value % 65536, 2)
  end
  local data = table.concat(samples)
  local header = table.concat({
    "RIFF",
    le(36 + #data, 4),
    "WAVEfmt ",
    le(16, 4), -- fmt chunk size
    le(1, 2), -- PCM
    le(1, 2), -- mono
    le(rate, 4),
    le(rate * 2, 4), -- byte rate
    le(2, 2), -- block align
    le(16, 2), -- bits per sample
    "data",
    le(#data, 4),
  })
  local f = assert(io.open(path, "wb"))
  f:write(header, data)
  f:close()
  return path
end

return M
