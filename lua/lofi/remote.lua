--- A daemon on another machine (`daemon.remote`, `:help lofi-remote`): finished tracks are
--- fetched over the daemon's own connection with `tracks.read` (docs/protocol.md) into the
--- plugin's cache, `stdpath("cache")/lofi/remote/<track_id>.<ext>`, and played from there.
---
--- A track is fetched when `daemon.remote` is set, or when the path the daemon reports cannot
--- be read on this machine. Fetches run one after another (so radio segments arrive in order),
--- each chunk requested once the previous one is written, never blocking the editor. Each copy
--- is written to a temporary file, checked against the daemon's sha256 of the whole file
--- (`lofi.sha256`), then renamed into place with its digest beside it (`<track_id>.sha256`), so
--- a track fetched before is used again without a download.
local config = require("lofi.config")
local errors = require("lofi.errors")
local log = require("lofi.log")
local rpc = require("lofi.rpc")
local sha256 = require("lofi.sha256")
local user = require("lofi.user")

local uv = vim.uv

local M = {}

--- Bytes asked for per `tracks.read` (the daemon's largest chunk).
M.CHUNK = 1024 * 1024

---@class lofi.RemoteFetch
---@field track_id string
---@field ext string
---@field callbacks fun(err: lofi.Error?, path: string?)[]

---@type lofi.RemoteFetch[] waiting, the first one running
local queue = {}
---@type table<string, lofi.RemoteFetch> by track id
local by_id = {}

--- Whether the daemon is configured as remote (`daemon.remote` set).
---@return boolean
function M.enabled()
  local remote = config.get().daemon.remote
  return remote ~= nil and remote ~= false
end

--- The folder of the fetched copies.
---@return string
function M.dir()
  return vim.fs.joinpath(vim.fn.stdpath("cache") --[[@as string]], "lofi", "remote")
end

--- Where the copy of `track_id` lives (`ext`: the daemon's file's extension).
---@param track_id string
---@param ext string
---@return string
function M.local_path(track_id, ext)
  return vim.fs.joinpath(M.dir(), track_id .. "." .. ext)
end

--- The extension of the daemon's path (wav when it has none we accept).
---@param path string
---@return string
local function extension(path)
  local ext = path:match("%.(%w+)$")
  return ext and ext:lower() or "wav"
end

--- Whether a track must be fetched: remote mode, or a path this machine cannot read.
---@param path string?
---@return boolean
function M.needed(path)
  return M.enabled() or type(path) ~= "string" or not uv.fs_access(path, "R")
end

---@param path string
---@return string?
local function read_text(path)
  local fd = uv.fs_open(path, "r", 438)
  if not fd then
    return nil
  end
  local text = uv.fs_read(fd, 128, 0)
  uv.fs_close(fd)
  return text
end

--- The copy of `track_id` fetched before, when it is complete (its digest file is written
--- last; `digest`, when given, must match it).
---@param track_id string
---@param ext string
---@param digest? string
---@param size? integer
---@return string?
function M.cached(track_id, ext, digest, size)
  local path = M.local_path(track_id, ext)
  local stat = uv.fs_stat(path)
  local known = read_text(vim.fs.joinpath(M.dir(), track_id .. ".sha256"))
  if not stat or not known or #known ~= 64 then
    return nil
  end
  if (digest and known ~= digest) or (size and stat.size ~= size) then
    return nil
  end
  return path
end

---@param message string
---@return lofi.Error
local function failure(message)
  return errors.new(errors.client.NO_TRACK, message)
end

local start_next

--- End the running fetch: every waiting callback gets `err` or `path`; the next one starts.
---@param job lofi.RemoteFetch
---@param err lofi.Error?
---@param path string?
local function finish(job, err, path)
  table.remove(queue, 1)
  by_id[job.track_id] = nil
  if err then
    log.warn("remote: fetching %s failed: %s", job.track_id, errors.format(err))
  else
    log.info("remote: %s is at %s", job.track_id, path)
  end
  for _, cb in ipairs(job.callbacks) do
    user.callback("remote fetch", cb, err, path)
  end
  start_next()
end

--- Fetch the running job's chunks into a temporary file, then check and place it.
---@param job lofi.RemoteFetch
local function run(job)
  local target = M.local_path(job.track_id, job.ext)
  local tmp = string.format("%s/.%s.%s.%d.tmp", M.dir(), job.track_id, job.ext, uv.hrtime())
  local hash = sha256.new()
  local fd ---@type integer?
  local expect ---@type {size: integer, sha256: string}?
  local offset = 0

  local function fail(err)
    if fd then
      uv.fs_close(fd)
      fd = nil
      uv.fs_unlink(tmp)
    end
    finish(job, err, nil)
  end

  local function request()
    local params = { track_id = job.track_id, offset = offset, length = M.CHUNK }
    rpc.request("tracks.read", params, function(err, reply)
      if err then
        return fail(err)
      end
      if
        type(reply) ~= "table"
        or reply.offset ~= offset
        or type(reply.data) ~= "string"
        or type(reply.size) ~= "number"
        or type(reply.sha256) ~= "string"
      then
        return fail(failure("tracks.read gave an answer without the chunk at " .. offset))
      end
      if not expect then
        local before = M.cached(job.track_id, job.ext, reply.sha256, reply.size)
        if before then
          return finish(job, nil, before)
        end
        expect = { size = reply.size, sha256 = reply.sha256 }
        vim.fn.mkdir(M.dir(), "p")
        local open_err
        fd, open_err = uv.fs_open(tmp, "wx", 420)
        if not fd then
          return fail(failure("cannot write " .. tmp .. ": " .. tostring(open_err)))
        end
      elseif reply.size ~= expect.size or reply.sha256 ~= expect.sha256 then
        return fail(failure(job.track_id .. " changed on the daemon while it was fetched"))
      end
      local ok, data = pcall(vim.base64.decode, reply.data)
      if not ok or #data ~= reply.length or (#data == 0 and not reply.eof) then
        return fail(failure("tracks.read gave a bad chunk at " .. offset))
      end
      if #data > 0 then
        local written, write_err = uv.fs_write(fd --[[@as integer]], data, offset)
        if written ~= #data then
          return fail(failure("cannot write " .. tmp .. ": " .. tostring(write_err)))
        end
        hash:update(data)
        offset = offset + #data
      end
      if not reply.eof then
        return request()
      end
      uv.fs_close(fd --[[@as integer]])
      fd = nil
      local digest = hash:hexdigest()
      if offset ~= expect.size or digest ~= expect.sha256 then
        uv.fs_unlink(tmp)
        local message = string.format(
          "the copy of %s does not match the daemon's file (%d of %d bytes, sha256 %s, expected %s); deleted",
          job.track_id,
          offset,
          expect.size,
          digest,
          expect.sha256
        )
        return finish(job, failure(message), nil)
      end
      local renamed, rename_err = uv.fs_rename(tmp, target)
      if not renamed then
        uv.fs_unlink(tmp)
        return finish(job, failure("cannot place " .. target .. ": " .. tostring(rename_err)), nil)
      end
      local sums = vim.fs.joinpath(M.dir(), job.track_id .. ".sha256")
      local sum_fd = uv.fs_open(sums, "w", 420)
      if sum_fd then
        uv.fs_write(sum_fd, digest, 0)
        uv.fs_close(sum_fd)
      end
      finish(job, nil, target)
    end)
  end

  request()
end

start_next = function()
  local job = queue[1]
  if job then
    log.debug("remote: fetching %s", job.track_id)
    run(job)
  end
end

--- Fetch a finished track's file from the daemon (or find the copy fetched before). `cb` runs
--- once, from the main loop, with the local path or an error (already logged).
---@param track_id string
---@param daemon_path string the path the daemon reported (its extension names the format)
---@param cb fun(err: lofi.Error?, path: string?)
function M.fetch(track_id, daemon_path, cb)
  if type(track_id) ~= "string" or not track_id:match("^[%w_-]+$") then
    vim.schedule(function()
      cb(failure("cannot fetch a track without a valid track id: " .. tostring(track_id)), nil)
    end)
    return
  end
  local job = by_id[track_id]
  if job then
    table.insert(job.callbacks, cb)
    return
  end
  job = { track_id = track_id, ext = extension(daemon_path), callbacks = { cb } }
  by_id[track_id] = job
  table.insert(queue, job)
  if #queue == 1 then
    start_next()
  end
end

--- The path to play for a finished track: `cb(path)` with the daemon's path when it is
--- readable here and the daemon is not remote (at once, inside this call), else with the local
--- copy once fetched. When the fetch fails, `cb` gets the daemon's path (playback then says
--- the file is missing) and, in remote mode, the error is shown.
---@param track_id string?
---@param path string
---@param cb fun(path: string)
function M.localize_path(track_id, path, cb)
  if not M.needed(path) then
    return cb(path)
  end
  M.fetch(track_id --[[@as string]], path, function(err, local_path)
    if err and M.enabled() then
      user.notify_error(err)
    end
    cb(local_path or path)
  end)
end

--- A track table with `path` the local copy (the daemon's in `daemon_path`); see
--- `localize_path`. `cb` gets the same table, changed in place.
---@param track lofi.Track
---@param cb fun(track: lofi.Track)
function M.localize(track, cb)
  if type(track) ~= "table" or type(track.path) ~= "string" or not M.needed(track.path) then
    return cb(track)
  end
  M.localize_path(track.track_id, track.path, function(path)
    if path ~= track.path then
      track.daemon_path = track.path
      track.path = path
    end
    cb(track)
  end)
end

--- `tracks` (from `tracks.list`) with the local copies' paths where they are fetched already.
---@param tracks lofi.Track[]?
---@return lofi.Track[]?
function M.known(tracks)
  for _, track in ipairs(tracks or {}) do
    if type(track) == "table" and type(track.path) == "string" and M.needed(track.path) then
      local track_id = type(track.track_id) == "string" and track.track_id or ""
      local copy = track_id:match("^[%w_-]+$") and M.cached(track_id, extension(track.path))
      if copy then
        track.daemon_path, track.path = track.path, copy
      end
    end
  end
  return tracks
end

--- The fetches waiting or running (for tests and `:checkhealth`).
---@return string[]
function M.pending()
  return vim.tbl_map(function(job)
    return job.track_id
  end, queue)
end

return M
