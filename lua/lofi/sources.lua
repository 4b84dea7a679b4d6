--- What an audio task works on: a cached track (by id) or an audio file.
---
--- `src` of `generate()` is a track id when it has a track id's shape (24 lowercase hex digits,
--- `lofi_daemon/service/track_ids.py`) and no file of that name exists; anything else is a file
--- path, taken literally (`lofi.paths`: only a leading `~` is expanded) and made absolute
--- against Neovim's current directory, so the daemon reads the file the user named.
local errors = require("lofi.errors")
local paths = require("lofi.paths")
local rpc = require("lofi.rpc")

local M = {}

--- True when `text` has the shape of a track id.
---@param text any
---@return boolean
function M.is_track_id(text)
  return type(text) == "string"
    and #text == 24
    and text:match("^%x+$") ~= nil
    and text:lower() == text
end

---@alias lofi.SourceKind "track"|"path"

--- Whether `src` names a cached track or a file, and the value to send (the id, or the
--- absolute path).
---@param src string
---@return lofi.SourceKind kind
---@return string value
function M.classify(src)
  if M.is_track_id(src) and not vim.uv.fs_stat(src) then
    return "track", src
  end
  return "path", paths.absolute(src)
end

--- The cached track with this id, from the daemon's `tracks.list`; NO_TRACK when there is none.
---@param track_id string
---@param cb fun(err: lofi.Error?, track: lofi.Track?)
function M.find_track(track_id, cb)
  rpc.request("tracks.list", nil, function(err, result)
    if err then
      cb(err, nil)
      return
    end
    for _, track in ipairs(type(result) == "table" and result.tracks or {}) do
      if type(track) == "table" and track.track_id == track_id then
        cb(nil, track)
        return
      end
    end
    cb(
      errors.new(
        errors.client.NO_TRACK,
        string.format("no cached track %s (and no file of that name)", track_id)
      ),
      nil
    )
  end)
end

--- A track as a `src`: its id when it is a cached track, else its file.
---@param track any a track table (or nil)
---@return string? src
function M.of_track(track)
  if type(track) ~= "table" then
    return nil
  end
  if M.is_track_id(track.track_id) then
    return track.track_id
  end
  return type(track.path) == "string" and track.path or nil
end

return M
