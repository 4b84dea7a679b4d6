--- `:Lofi status`: the daemon, what generates and plays, the models (folder, model version,
--- execution provider), the daemon's version and the last track's file. With a daemon running,
--- the model lines come from its `ping` and `backends.list` answers (each bounded by the
--- request timeout); without one nothing is started and the configured folder is shown. The
--- backend in use is named with where the choice comes from (`lofi.backend`), and each
--- backend's install status is listed.
local backend_choice = require("lofi.backend")
local config = require("lofi.config")
local one_line = require("lofi.text").one_line

local M = {}

---@param gen lofi.GenerationInfo
---@return string
local function generation_line(gen)
  local detail = gen.status
  if gen.status == "running" then
    detail = string.format("%d%%", math.floor((tonumber(gen.percent) or 0) + 0.5))
    if gen.phase then
      local steps = string.format("%s/%s", gen.step or "?", gen.total_steps or "?")
      detail = string.format("%s %s %s", detail, gen.phase, steps)
    end
  end
  return string.format("generating: %s [%s]", one_line(gen.prompt or "?"), detail)
end

--- The lines known without asking the daemon.
---@return string[]
local function local_lines()
  local lines = {}
  local active = require("lofi.generations").active()
  if #active == 0 then
    lines[#lines + 1] = "generating: nothing"
  end
  for _, gen in ipairs(active) do
    lines[#lines + 1] = generation_line(gen)
  end
  local playing = require("lofi.player").current()
  if playing then
    lines[#lines + 1] = string.format(
      "%s: %s (pid %d)",
      playing.paused and "paused" or "playing",
      one_line(playing.track.prompt or playing.track.path),
      playing.pid
    )
  else
    lines[#lines + 1] = "playing: nothing"
  end
  return lines
end

---@param track? lofi.Track
---@return string
local function last_track_line(track)
  if track and type(track.path) == "string" then
    return "last track: " .. track.path
  end
  return "last track: none yet"
end

--- The model lines from the daemon's answers.
---@param backends any `backends.list` result
---@param err? lofi.Error
---@return string[]
local function model_lines(backends, err)
  if err or type(backends) ~= "table" then
    return {
      "backend: " .. backend_choice.describe(),
      "models: unknown (" .. (err and err.name or "no answer") .. ")",
    }
  end
  backend_choice.remember(backends)
  local head = {
    "backend: " .. backend_choice.describe(backends),
    "backends: " .. backend_choice.summary(backends),
  }
  local name = backend_choice.in_use(backends)
  for _, backend in ipairs(backends) do
    if type(backend) == "table" and backend.name == name then
      local version = backend.model_version
      local providers = type(backend.providers) == "table" and backend.providers or {}
      return vim.list_extend(head, {
        string.format(
          "models: %s (%s, model version %s)",
          tostring(backend.models_dir or config.get().daemon.models_dir or "?"),
          tostring(backend.status or "?"),
          type(version) == "string" and version or "none"
        ),
        "provider: "
          .. (#providers > 0 and table.concat(providers, ", ") or "none yet (no generation ran)"),
      })
    end
  end
  head[#head + 1] = string.format("models: backend %s is not offered by the daemon", tostring(name))
  return head
end

--- Collect the status and pass it to `show` as one text (at once without a daemon, else when
--- the daemon has answered or the requests timed out).
---@param show fun(text: string)
function M.show(show)
  local rpc = require("lofi.rpc")
  local pid = require("lofi.client").pid()
  local last = require("lofi.generations").last_track()
  local head = local_lines()
  if not pid then
    local dir = config.get().daemon.models_dir
    table.insert(head, 1, "daemon: not running (starts on first use)")
    head[#head + 1] = "backend: " .. backend_choice.describe()
    head[#head + 1] = "models: " .. (dir or "the daemon's default folder")
    head[#head + 1] = last_track_line(last)
    show(table.concat(head, "\n"))
    return
  end
  local answers, waiting = {}, 3
  local function done()
    waiting = waiting - 1
    if waiting > 0 then
      return
    end
    local ping = answers.ping
    local version = type(ping) == "table" and ping.version or "?"
    table.insert(head, 1, string.format("daemon: running (pid %d, version %s)", pid, version))
    vim.list_extend(head, model_lines(answers.backends, answers.backends_err))
    if not last and type(answers.tracks) == "table" and type(answers.tracks.tracks) == "table" then
      last = answers.tracks.tracks[1]
    end
    head[#head + 1] = last_track_line(last)
    show(table.concat(head, "\n"))
  end
  rpc.request("ping", nil, function(_, result)
    answers.ping = result
    done()
  end)
  rpc.request("backends.list", nil, function(err, result)
    answers.backends, answers.backends_err = result, err
    done()
  end)
  rpc.request("tracks.list", nil, function(_, result)
    answers.tracks = result
    done()
  end)
end

return M
