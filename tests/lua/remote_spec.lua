-- The daemon on another machine (`:help lofi-remote`): a real sshd on 127.0.0.1 started by the
-- test, the daemon launched through ssh in its own mount namespace whose cache folder (a tmpfs)
-- the editor cannot see, the track fetched with `tracks.read` into the plugin's cache and
-- played (mpv --ao=null) from there.
local t = require("lofi_test")
local uv = vim.uv

local SSHD = "/usr/sbin/sshd"

---@param argv string[]
---@return string output
local function run(argv)
  local result = vim.system(argv, { text = true }):wait()
  assert(result.code == 0, table.concat(argv, " ") .. " failed: " .. (result.stderr or ""))
  return result.stdout or ""
end

---@return integer port a free TCP port on 127.0.0.1
local function free_port()
  local server = assert(uv.new_tcp())
  assert(server:bind("127.0.0.1", 0))
  local port = server:getsockname().port
  server:close()
  return port
end

---@param path string
---@return string
local function read_bytes(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

--- Start sshd on a free port of 127.0.0.1, accepting `dir`/client_key for this user.
---@param dir string
---@return {port: integer, key: string, proc: vim.SystemObj, log: string[]}
local function start_sshd(dir)
  assert(
    uv.fs_access(SSHD, "X"),
    SSHD .. " is missing: this test needs Debian's openssh-server (.ci/run installs it)"
  )
  assert(vim.fn.executable("ssh") == 1, "this test needs the ssh client (openssh-client)")
  local host_key = vim.fs.joinpath(dir, "host_key")
  local key = vim.fs.joinpath(dir, "client_key")
  run({ "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key })
  run({ "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key })
  local port = free_port()
  local cfg = vim.fs.joinpath(dir, "sshd_config")
  vim.fn.writefile({
    "ListenAddress 127.0.0.1",
    "Port " .. port,
    "HostKey " .. host_key,
    "AuthorizedKeysFile " .. key .. ".pub",
    "PubkeyAuthentication yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PermitRootLogin prohibit-password",
    "StrictModes no",
    "UsePAM no",
    "PidFile " .. vim.fs.joinpath(dir, "sshd.pid"),
  }, cfg)
  -- sshd refuses to start without its privilege separation folder
  vim.fn.mkdir("/run/sshd", "p")
  local log = {}
  local proc = vim.system({ SSHD, "-D", "-e", "-f", cfg }, {
    stderr = function(_, data)
      table.insert(log, data)
    end,
  })
  t.wait(10000, function()
    local probe = assert(uv.new_tcp())
    local connected = nil
    probe:connect("127.0.0.1", port, function(err)
      connected = err == nil
    end)
    vim.wait(500, function()
      return connected ~= nil
    end, 10)
    probe:close()
    return connected == true or proc:is_closing()
  end, "sshd to listen on port " .. port)
  assert(not proc:is_closing(), "sshd exited: " .. table.concat(log))
  return { port = port, key = key, proc = proc, log = log }
end

--- Whether a tmpfs can be mounted in a new user+mount namespace here (the daemon's hidden
--- cache folder); else the daemon's folder stays visible and the test says so.
---@param dir string
---@return boolean
local function can_hide(dir)
  local probe = vim.fs.joinpath(dir, "probe")
  vim.fn.mkdir(probe, "p")
  local result =
    vim.system({ "unshare", "-rm", "sh", "-c", "mount -t tmpfs none " .. probe }):wait()
  return result.code == 0
end

t.describe("remote daemon over ssh", function()
  t.it("fetches a finished track into the local cache and plays the copy", function()
    t.ok(vim.fn.executable("mpv") == 1, "this test needs mpv (apt install mpv)")
    local dir = t.tmpdir()
    local sshd = start_sshd(dir)
    local remote_cache = vim.fs.joinpath(dir, "daemon-cache")
    vim.fn.mkdir(remote_cache, "p")
    local daemon = vim.fs.joinpath(t.root, ".venv", "bin", "lofi-daemon")
    t.ok(vim.fn.executable(daemon) == 1, "the daemon at " .. daemon)
    local hidden = can_hide(dir)
    -- ssh joins the command's words with spaces for the remote shell: quote the script once
    local remote_cmd = hidden
        and {
          "unshare",
          "-rm",
          "sh",
          "-c",
          string.format("'mount -t tmpfs none %s && exec %s \"$@\"'", remote_cache, daemon),
          "lofi-daemon",
        }
      or { daemon }
    if not hidden then
      io.stdout:write("  note: unshare cannot mount a tmpfs here; the daemon's cache is visible\n")
    end
    local cmd = {
      "ssh",
      "-p",
      tostring(sshd.port),
      "-i",
      sshd.key,
      "-o",
      "StrictHostKeyChecking=no",
      "-o",
      "UserKnownHostsFile=/dev/null",
      "-o",
      "BatchMode=yes",
      "-o",
      "LogLevel=ERROR",
      "127.0.0.1",
    }
    vim.list_extend(cmd, remote_cmd)
    local ok, err = pcall(function()
      local lofi = require("lofi")
      local messages = t.capture_notify()
      lofi.setup(t.config({
        daemon = {
          cmd = cmd,
          remote = true,
          cache_dir = remote_cache,
          log_file = vim.fs.joinpath(dir, "daemon.log"),
        },
        player = { cmd = { "mpv", "--ao=null", "--really-quiet" }, autoplay = true },
      }))
      require("lofi.remote").CHUNK = 300000 -- a 5 s track (~0.9 MB) comes in several chunks
      local done, gen_err, track = false, nil, nil
      lofi.generate(
        { prompt = "rain on a tin roof", duration = 5, steps = 3, seed = 5 },
        function(e, tr)
          done, gen_err, track = true, e, tr
        end
      )
      t.wait(120000, function()
        return done
      end, "the generation through ssh")
      assert(gen_err == nil, tostring(gen_err and gen_err.message) .. " " .. t.joined(messages))
      assert(track)

      local remote = require("lofi.remote")
      local expected = remote.local_path(track.track_id, "wav")
      t.eq(track.path, expected, "the track is the local copy")
      t.eq(
        track.daemon_path,
        vim.fs.joinpath(uv.fs_realpath(remote_cache), track.track_id .. ".wav")
      )
      t.ok(track.daemon_path ~= track.path, "the daemon's path is kept apart")
      if hidden then
        t.ok(not uv.fs_stat(track.daemon_path), "the daemon's cache is invisible to the editor")
      end
      local copy = read_bytes(track.path)
      t.ok(#copy > 2 * 300000, "several chunks: " .. #copy .. " bytes")
      -- the daemon's file, as the daemon itself sees it
      local original
      if hidden then
        -- read it through the daemon's own mount namespace: the daemon's pid's root
        local pong_err, pong = require("lofi.rpc").request_sync("ping", nil, 10000)
        assert(not pong_err, tostring(pong_err))
        original = read_bytes(string.format("/proc/%d/root%s", pong.pid, track.daemon_path))
      else
        original = read_bytes(track.daemon_path)
      end
      t.eq(#copy, #original, "same size")
      t.ok(copy == original, "byte-identical to the daemon's file")
      t.eq(require("lofi.sha256").hex(copy), vim.fn.system({ "sha256sum", track.path }):sub(1, 64))

      t.wait(10000, function()
        return require("lofi.player").current() ~= nil
      end, "playback to start: " .. t.joined(messages))
      local playing = assert(require("lofi.player").current())
      t.eq(playing.argv[1], "mpv")
      t.eq(playing.argv[#playing.argv], expected, "mpv plays the local copy")
      for _, word in ipairs(playing.argv) do
        t.ok(word ~= track.daemon_path, "the daemon's path never reaches the player")
      end
      for _, message in ipairs(messages) do
        t.ok(message.level < vim.log.levels.WARN, "no warning or error: " .. message.msg)
      end
    end)
    pcall(function()
      require("lofi").shutdown(3000)
    end)
    sshd.proc:kill("sigterm")
    sshd.proc:wait(5000)
    assert(ok, tostring(err) .. "\nsshd: " .. table.concat(sshd.log))
  end)
end)

t.describe("remote options and fetching (no daemon)", function()
  t.it(
    "daemon.remote = host runs ssh host lofi-daemon serve, without the local log path",
    function()
      local config = require("lofi.config")
      config.setup({ daemon = { remote = "gpu-box", args = { "--provider", "cuda" } } })
      local argv = assert(require("lofi.client").command(config.get()))
      t.eq(argv, { "ssh", "gpu-box", "lofi-daemon", "serve", "--provider", "cuda" })
      config.setup({
        daemon = { remote = true, cmd = { "ssh", "gpu-box", "lofi-daemon", "serve" } },
      })
      argv = assert(require("lofi.client").command(config.get()))
      t.eq(argv, { "ssh", "gpu-box", "lofi-daemon", "serve" }, "serve is not given twice")
      t.raises(function()
        config.setup({ daemon = { remote = 5 } })
      end, "daemon.remote")
    end
  )

  t.it("hashes binary strings like sha256sum, in pieces", function()
    local sha256 = require("lofi.sha256")
    for _, text in ipairs({
      "",
      "abc",
      string.rep("x", 55),
      string.rep("y", 64),
      string.rep("z", 1000),
    }) do
      t.eq(sha256.hex(text), vim.fn.sha256(text))
    end
    local hash = sha256.new()
    hash:update("a\0b")
    hash:update("\0c")
    t.eq(hash:hexdigest(), "8badde10c760e9b702defb4b5e225de79c515b1d2a5cfb000e140f3c6fbb5629")
  end)

  t.it("deletes a copy whose sha256 does not match and reports it", function()
    local lofi = require("lofi")
    lofi.setup({ daemon = { remote = "gpu-box" }, notify = false })
    local messages = t.capture_notify()
    local rpc = require("lofi.rpc")
    local data = "RIFF and some audio bytes"
    rpc.request = function(method, params, cb)
      assert(method == "tracks.read", method)
      vim.schedule(function()
        cb(nil, {
          track_id = params.track_id,
          offset = params.offset,
          length = #data,
          size = #data,
          sha256 = string.rep("0", 64),
          eof = true,
          data = vim.base64.encode(data),
        })
      end)
      return 0
    end
    local remote = require("lofi.remote")
    local got = nil
    remote.localize({ track_id = "abc123", path = "/elsewhere/abc123.wav" }, function(track)
      got = track
    end)
    t.wait(5000, function()
      return got ~= nil
    end, "the fetch to end")
    t.eq(got.path, "/elsewhere/abc123.wav", "no copy: the daemon's path is kept")
    t.eq(vim.fn.glob(vim.fs.joinpath(remote.dir(), "*abc123*"), true, true), {})
    t.eq(#messages, 1)
    t.contains(messages[1].msg, "does not match the daemon's file")
    t.eq(messages[1].level, vim.log.levels.ERROR)
  end)
end)
