--- SHA-256 of binary strings, fed in pieces (FIPS 180-4, https://doi.org/10.6028/NIST.FIPS.180-4).
---
--- `vim.fn.sha256()` takes a String, and a Lua string with a NUL byte (any audio file) reaches
--- Vimscript as a Blob, which it refuses (E976). This gives the same hex digest for any bytes,
--- and can be fed chunk by chunk so a large file is hashed between other work.
--- Uses LuaJIT's `bit` library (Neovim's Lua).
local bit = require("bit")

local band, bor, bxor, bnot = bit.band, bit.bor, bit.bxor, bit.bnot
local rshift, lshift, ror, tobit = bit.rshift, bit.lshift, bit.ror, bit.tobit
local byte, char, rep = string.byte, string.char, string.rep

local M = {}

-- stylua: ignore
local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
for i = 1, 64 do
  K[i] = tobit(K[i])
end

local W = {}

--- Process the 64-byte block of `s` starting at index `i` into `H`.
---@param H integer[]
---@param s string
---@param i integer
local function block(H, s, i)
  for j = 0, 15 do
    local b1, b2, b3, b4 = byte(s, i + 4 * j, i + 4 * j + 3)
    W[j] = bor(lshift(b1, 24), lshift(b2, 16), lshift(b3, 8), b4)
  end
  for j = 16, 63 do
    local w15, w2 = W[j - 15], W[j - 2]
    local s0 = bxor(ror(w15, 7), ror(w15, 18), rshift(w15, 3))
    local s1 = bxor(ror(w2, 17), ror(w2, 19), rshift(w2, 10))
    W[j] = tobit(W[j - 16] + s0 + W[j - 7] + s1)
  end
  local a, b, c, d, e, f, g, h = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
  for j = 0, 63 do
    local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
    local ch = bxor(band(e, f), band(bnot(e), g))
    local t1 = h + S1 + ch + K[j + 1] + W[j]
    local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
    local maj = bxor(band(a, b), band(a, c), band(b, c))
    h, g, f, e = g, f, e, tobit(d + t1)
    d, c, b, a = c, b, a, tobit(t1 + S0 + maj)
  end
  H[1], H[2], H[3], H[4] = tobit(H[1] + a), tobit(H[2] + b), tobit(H[3] + c), tobit(H[4] + d)
  H[5], H[6], H[7], H[8] = tobit(H[5] + e), tobit(H[6] + f), tobit(H[7] + g), tobit(H[8] + h)
end

---@class lofi.Sha256
---@field package H integer[]
---@field package rest string bytes not yet hashed (under 64)
---@field package total integer bytes fed
local Sha256 = {}
Sha256.__index = Sha256

--- A new hash.
---@return lofi.Sha256
function M.new()
  local H = {
    0x6a09e667,
    0xbb67ae85,
    0x3c6ef372,
    0xa54ff53a,
    0x510e527f,
    0x9b05688c,
    0x1f83d9ab,
    0x5be0cd19,
  }
  for i = 1, 8 do
    H[i] = tobit(H[i])
  end
  return setmetatable({ H = H, rest = "", total = 0 }, Sha256)
end

--- Feed bytes.
---@param data string
function Sha256:update(data)
  self.total = self.total + #data
  local s = self.rest .. data
  local full = #s - #s % 64
  for i = 1, full, 64 do
    block(self.H, s, i)
  end
  self.rest = s:sub(full + 1)
end

--- The hex digest of everything fed (the hash cannot be fed afterwards).
---@return string
function Sha256:hexdigest()
  local bits = self.total * 8
  local pad = 64 - (self.total + 9) % 64
  if pad == 64 then
    pad = 0
  end
  local high, low = math.floor(bits / 2 ^ 32), bits % 2 ^ 32
  local tail = char(0x80)
    .. rep("\0", pad)
    .. char(band(rshift(high, 24), 255), band(rshift(high, 16), 255))
    .. char(band(rshift(high, 8), 255), band(high, 255))
    .. char(math.floor(low / 2 ^ 24) % 256, math.floor(low / 2 ^ 16) % 256)
    .. char(math.floor(low / 2 ^ 8) % 256, low % 256)
  local s = self.rest .. tail
  for i = 1, #s, 64 do
    block(self.H, s, i)
  end
  local out = {}
  for i = 1, 8 do
    out[i] = bit.tohex(self.H[i], 8)
  end
  return table.concat(out)
end

--- The hex digest of `data` (what `vim.fn.sha256(data)` gives for a string without NUL).
---@param data string
---@return string
function M.hex(data)
  local h = M.new()
  h:update(data)
  return h:hexdigest()
end

return M
