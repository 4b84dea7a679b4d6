--- The `:Lofi` command: subcommands, argument parsing and completion.
local config = require("lofi.config")
local errors = require("lofi.errors")
local generate_args = require("lofi.generate_args")
local task_args = require("lofi.task_args")
local user = require("lofi.user")

local M = {}

local notify, notify_error = user.notify, user.notify_error

--- Split `:Lofi generate` arguments into options and the prompt (see `lofi.generate_args`).
M.parse_generate = generate_args.parse

--- The graph sets `:Lofi setup precision=` accepts (the daemon's `setup --precision`).
local PRECISIONS = { "auto", "fp16", "fp32" }

--- `:Lofi setup` arguments: the backend (default: the configured one, else ace-step),
--- `checkpoint=DIR`, `precision=auto|fp16|fp32`, and the flags `force` and `yes`.
---@param args string[]
---@return lofi.SetupOpts? opts
---@return string? err
function M.parse_setup(args)
  local opts = { backend = require("lofi.backend").configured() or "ace-step" }
  for i, arg in ipairs(args) do
    local key, value = arg:match("^(%w+)=(.*)$")
    if key == "checkpoint" then
      if value == "" then
        return nil, "`checkpoint=` needs a folder"
      end
      opts.checkpoint = value
    elseif key == "precision" then
      if not vim.tbl_contains(PRECISIONS, value) then
        return nil, string.format("`precision=` takes %s", table.concat(PRECISIONS, ", "))
      end
      opts.precision = value
    elseif arg == "force" or arg == "yes" then
      opts[arg] = true
    elseif i == 1 and not key then
      opts.backend = arg
    else
      return nil,
        string.format(
          "unknown setup argument %q (use checkpoint=DIR, precision=auto|fp16|fp32, force, yes)",
          arg
        )
    end
  end
  return opts, nil
end

---@param path string
local function open_log(path)
  if not vim.uv.fs_stat(path) then
    notify("no log yet at " .. path, vim.log.levels.WARN)
    return
  end
  vim.cmd.split(vim.fn.fnameescape(path))
  vim.cmd.normal({ "G", bang = true })
end

---@class lofi.Subcommand
---@field run fun(args: string[], info: table)
---@field complete? fun(arglead: string, args: string[]): string[]
---@field usage string

---@type table<string, lofi.Subcommand>
M.subcommands = {
  generate = {
    usage = "generate {prompt} [duration=N] [seed=N] [steps=N] [scheduler=…] [format=…] "
      .. "[backend=…] [lyrics=…] [language=…] [bpm=N] [key=…] [time_signature=N] [shift=N]",
    run = function(args)
      local opts, err = M.parse_generate(args)
      if not opts then
        notify_error(errors.new(errors.client.INVALID_OPTION, err --[[@as string]]))
        return
      end
      require("lofi").generate(opts)
    end,
    complete = generate_args.complete,
  },
  play = {
    usage = "play [track id, prompt or file]",
    run = function(args)
      -- A prompt is one escaped argument ("rainy\ night") or several words.
      require("lofi").play(#args > 0 and table.concat(args, " ") or nil)
    end,
    complete = function(_, args)
      if #args > 1 then
        return {}
      end
      return require("lofi.track_complete").candidates()
    end,
  },
  stop = {
    usage = "stop",
    run = function()
      if not require("lofi").stop() then
        notify("nothing is playing")
      end
    end,
  },
  pause = {
    usage = "pause",
    run = function()
      local ok, err = require("lofi").pause()
      if not ok and err then
        notify_error(err)
      end
    end,
  },
  resume = {
    usage = "resume",
    run = function()
      local ok, err = require("lofi").resume()
      if not ok and err then
        notify_error(err)
      end
    end,
  },
  radio = {
    usage = require("lofi.radio_commands").USAGE,
    run = function(args)
      require("lofi.radio_commands").run(args)
    end,
    complete = function(arglead, args)
      return require("lofi.radio_args").complete(arglead, args)
    end,
  },
  cancel = {
    usage = "cancel [track id]",
    run = function(args)
      require("lofi").cancel(args[1])
    end,
    complete = function()
      local ids = {}
      for _, gen in ipairs(require("lofi").active()) do
        ids[#ids + 1] = gen.track_id
      end
      return ids
    end,
  },
  status = {
    usage = "status",
    run = function()
      require("lofi.status_report").show(notify)
    end,
  },
  tracks = {
    usage = "tracks [retake|repaint|extend|remix|edit {arguments}]",
    run = function(args)
      local action = args[1]
      if action == nil then
        require("lofi.task_commands").pick("lofi tracks", function(track)
          require("lofi").play(track)
        end)
      elseif task_args.commands[action] then
        require("lofi.task_commands").run_picked(action, vim.list_slice(args, 2))
      else
        notify(
          string.format("unknown tracks action %q; use %s", action, M.subcommands.tracks.usage),
          vim.log.levels.ERROR
        )
      end
    end,
    complete = function(arglead, args)
      if #args <= 1 then
        return vim.tbl_keys(task_args.commands)
      end
      if not task_args.commands[args[2]] then
        return {}
      end
      return task_args.complete(args[2], arglead, vim.list_slice(args, 2), true)
    end,
  },
  setup = {
    usage = "setup [ace-step|ace-step-1.5] [checkpoint=DIR] [precision=auto|fp16|fp32] [force] [yes]"
      .. " | setup cancel",
    run = function(args)
      if args[1] == "cancel" then
        require("lofi").cancel_install(function(err, cancelled)
          if err then
            notify_error(err)
          elseif not cancelled then
            notify("no setup is running")
          end
        end)
        return
      end
      local opts, err = M.parse_setup(args)
      if not opts then
        notify_error(errors.new(errors.client.INVALID_OPTION, err --[[@as string]]))
        return
      end
      local backend = opts.backend
      notify("setting up " .. backend .. " …")
      require("lofi").install(opts, function(setup_err, result)
        if setup_err and setup_err.code == errors.daemon.METHOD_NOT_FOUND then
          notify(
            string.format(
              "`:Lofi setup` is not available in this daemon: run `lofi-daemon setup %s` in "
                .. "a terminal",
              backend
            ),
            vim.log.levels.WARN
          )
        elseif setup_err and setup_err.code == errors.daemon.GENERATION_CANCELLED then
          notify("setup cancelled; run it again to resume", vim.log.levels.WARN)
        elseif setup_err then
          notify_error(setup_err)
        elseif result then
          local what = result.already_installed and "already installed and verified" or "installed"
          notify(string.format("%s %s in %s", backend, what, tostring(result.models_dir)))
        end
      end)
    end,
    complete = function(arglead, args)
      if #args <= 1 and not arglead:find("=") then
        local names = require("lofi.backend").names()
        names[#names + 1] = "cancel"
        return names
      end
      if arglead:find("^precision=") then
        return vim.tbl_map(function(p)
          return "precision=" .. p
        end, PRECISIONS)
      end
      return { "checkpoint=", "precision=", "force", "yes" }
    end,
  },
  config = {
    usage = require("lofi.config_commands").USAGE,
    run = function(args)
      require("lofi.config_commands").run(args)
    end,
    complete = function(arglead, args)
      return require("lofi.config_commands").complete(arglead, args)
    end,
  },
  log = {
    usage = "log [daemon|plugin]",
    run = function(args)
      local log = require("lofi.log")
      if args[1] == "plugin" then
        open_log(log.path())
      elseif args[1] == nil or args[1] == "daemon" then
        local file = config.get().daemon.log_file
        open_log(type(file) == "string" and require("lofi.paths").expand(file) or log.daemon_path())
      else
        notify("usage: :Lofi log [daemon|plugin]", vim.log.levels.ERROR)
      end
    end,
    complete = function()
      return { "daemon", "plugin" }
    end,
  },
}

for name, sub in pairs(require("lofi.task_commands").subcommands()) do
  M.subcommands[name] = sub
end

---@return string[]
function M.names()
  local names = vim.tbl_keys(M.subcommands)
  table.sort(names)
  return names
end

--- Run `:Lofi` with the command's arguments.
---@param info {fargs: string[]}
function M.run(info)
  if vim.g.lofi_disable then
    notify("lofi.nvim is disabled (vim.g.lofi_disable)", vim.log.levels.WARN)
    return
  end
  local name = info.fargs[1]
  if not name then
    local usages = vim.tbl_map(function(sub)
      return "  :Lofi " .. M.subcommands[sub].usage
    end, M.names())
    notify("usage:\n" .. table.concat(usages, "\n"))
    return
  end
  local sub = M.subcommands[name]
  if not sub then
    notify(
      string.format("unknown subcommand %q; use one of: %s", name, table.concat(M.names(), ", ")),
      vim.log.levels.ERROR
    )
    return
  end
  sub.run(vim.list_slice(info.fargs, 2), info)
end

--- Completion for `:Lofi`.
---@param arglead string
---@param cmdline string
---@return string[]
function M.complete(arglead, cmdline)
  local words = vim.split(vim.trim(cmdline), "%s+")
  table.remove(words, 1) -- the command itself
  if arglead ~= "" then
    table.remove(words) -- the word being completed
  end
  local candidates
  if #words == 0 then
    candidates = M.names()
  else
    local sub = M.subcommands[words[1]]
    if not sub or not sub.complete then
      return {}
    end
    candidates = sub.complete(arglead, words)
  end
  return vim.tbl_filter(function(item)
    return vim.startswith(item, arglead)
  end, candidates)
end

return M
