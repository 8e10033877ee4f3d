-- Benchmark arm B: meshver's request path written for envoy.filters.http.lua.
-- The catalog (CATALOG, a Lua table) is prepended by bench/run.py from the same
-- examples/catalog.json the wasm filter loads. Same order of work as src/resolve:
-- drop owned headers, find the service by path prefix, read the version from every
-- enabled source, parse it, refuse disagreement, narrow deployments by the caret range,
-- pick the line's route (whole line) or the newest deployment's (pinned), set the route
-- and version headers, strip the version from the path, or answer with problem+json.
-- Like meshver, it leaves the response alone: the route config (shared with arm C, as
-- `meshver render envoy` writes it) adds a deprecated deployment's lifecycle headers.

local OWNED_PREFIX = "x-meshver-"

-- MAJOR[.MINOR[.PATCH]] after an optional v/V, components 1-9 digits without leading zero.
local function component(text)
  if text == nil then return nil end
  if #text == 0 or #text > 9 or text:find("%D") or (#text > 1 and text:sub(1, 1) == "0") then
    return false
  end
  return tonumber(text)
end

local function parse_version(raw)
  local text = raw:match("^%s*(.-)%s*$")
  if text == "" then return nil, "empty" end
  if #text > 32 then return nil, "too long" end
  text = text:gsub("^[vV]", "", 1)
  local parts = {}
  for part in (text .. "."):gmatch("([^.]*)%.") do parts[#parts + 1] = part end
  if #parts > 3 then return nil, "invalid" end
  local major, minor, patch = component(parts[1]), component(parts[2]), component(parts[3])
  if not major or minor == false or patch == false then return nil, "invalid" end
  return { major = major, minor = minor, patch = patch }
end

local function version_text(v)
  local s = tostring(v.major)
  if v.minor then
    s = s .. "." .. v.minor
    if v.patch then s = s .. "." .. v.patch end
  end
  return s
end

local function same_range(x, y)
  if x.major == 0 or y.major == 0 then
    return x.major == y.major and x.minor == y.minor and x.patch == y.patch
  end
  return x.major == y.major and (x.minor or 0) == (y.minor or 0) and (x.patch or 0) == (y.patch or 0)
end

-- Semver caret: does a deployment (d = {major, minor, patch}) satisfy ^requested?
local function caret_matches(r, d)
  local minor, patch = r.minor or 0, r.patch or 0
  if r.major > 0 or r.minor == nil then
    if d.major ~= r.major then return false end
    if r.major == 0 then return true end
    return d.minor > minor or (d.minor == minor and d.patch >= patch)
  end
  if d.major ~= 0 then return false end
  if r.minor > 0 or r.patch == nil then
    return d.minor == r.minor and d.patch >= patch
  end
  return d.minor == 0 and d.patch == r.patch
end

local function is_version_token(token)
  return token:match("^[vV]%d[%d.]*$") ~= nil
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(ch)
    if ch == '"' then return '\\"' elseif ch == "\\" then return "\\\\" end
    return string.format("\\u%04x", ch:byte())
  end) .. '"'
end

-- A gRPC client cannot read problem+json: it gets HTTP 200 with the matching gRPC status.
local GRPC_CODES = { ["malformed-version"] = "3", ["version-conflict"] = "3", ["unsupported-version"] = "12" }

local function reject(handle, service, slug, title, detail, requested, grpc)
  if grpc then
    handle:respond({
      [":status"] = "200",
      ["content-type"] = "application/grpc",
      ["grpc-status"] = GRPC_CODES[slug],
      ["grpc-message"] = detail,
      ["meshver-problem-type"] = "urn:meshver:problem:" .. slug,
      ["api-supported-versions"] = table.concat(service.supported, ", "),
    }, "")
    return
  end
  local versions = {}
  for i, v in ipairs(service.supported) do versions[i] = json_string(v) end
  local body = '{"type":"urn:meshver:problem:' .. slug .. '","title":' .. json_string(title)
    .. ',"status":400,"detail":' .. json_string(detail) .. ',"service":' .. json_string(service.name)
    .. ',"supported_versions":[' .. table.concat(versions, ",") .. "]"
  if requested then body = body .. ',"requested_version":' .. json_string(requested) end
  body = body .. "}"
  handle:respond({
    [":status"] = "400",
    ["content-type"] = "application/problem+json",
    ["api-supported-versions"] = table.concat(service.supported, ", "),
    ["cache-control"] = "no-store",
  }, body)
end

-- A client's sticky bucket, 0000-9999, for the weighted route's header_name: FNV-1a (32 bits)
-- of the key where meshver uses xxh3 (the same job: a stable number per client).
local function sticky_bucket(key)
  local hash = 2166136261
  for i = 1, #key do
    hash = bit.bxor(hash, key:byte(i))
    -- hash * 16777619 mod 2^32, without losing bits in a double: 16777619 = 2^24 + 403.
    hash = bit.tobit(bit.lshift(hash, 24) + hash * 403)
  end
  return string.format("%04d", (hash % 4294967296) % 10000)
end

local function split_path(full)
  local q = full:find("?", 1, true)
  if q then return full:sub(1, q - 1), full:sub(q + 1) end
  return full, nil
end

local function leading_version(path)
  local seg, rest = path:match("^/([^/]*)(.*)$")
  if seg and is_version_token(seg) then
    return seg, (rest == "" and "/" or rest)
  end
end

local function suffix_version(path)
  local head, last = path:match("^(.*/)([^/]*)$")
  if not last then head, last = "", path end
  local name, raw = last:match("^(.+)_([^_]*)$")
  if name and is_version_token(raw) then return raw, head .. name end
end

local function starts_with_any(s, prefixes)
  for _, p in ipairs(prefixes) do
    if s:sub(1, #p) == p then return true end
  end
  return false
end

local function accept_versions(value, vendor, out)
  for range in value:gmatch("[^,]+") do
    local media = range:match("^%s*([^;]*)")
    local sub = media:match("/vnd%.([^+%s]*)")
    if sub then
      local at = sub:find("%.[vV]%d")
      if at then
        local found_vendor = sub:sub(1, at - 1)
        if vendor == nil or found_vendor:lower() == vendor:lower() then out[#out + 1] = sub:sub(at + 1) end
      end
    end
    for name, v in range:gmatch(";%s*([^=;]-)%s*=%s*([^;]*)") do
      if name:lower() == "version" then
        v = v:match("^%s*(.-)%s*$")
        out[#out + 1] = v:match('^"(.*)"$') or v
      end
    end
  end
end

function envoy_on_request(handle)
  local headers = handle:headers()
  local owned = {}
  for name, _ in pairs(headers) do
    if name:sub(1, #OWNED_PREFIX) == OWNED_PREFIX then owned[#owned + 1] = name end
  end
  for _, name in ipairs(owned) do headers:remove(name) end

  local full = headers:get(":path") or ""
  local path, query = split_path(full)
  local lead_raw, lead_rest = leading_version(path)
  local suf_raw, suf_rest = suffix_version(path)

  local service
  for _, s in ipairs(CATALOG.services) do
    local both = lead_rest and suf_raw and lead_rest:sub(1, #lead_rest - (#path - #suf_rest)) or nil
    if starts_with_any(path, s.prefixes) or (lead_rest and starts_with_any(lead_rest, s.prefixes))
      or (suf_rest and starts_with_any(suf_rest, s.prefixes)) or (both and starts_with_any(both, s.prefixes)) then
      service = s
      break
    end
  end
  if not service then return end

  -- Every version the enabled sources find, in precedence order.
  local found = {}
  local used = {}
  for _, source in ipairs(service.sources) do
    local before = #found
    if source == "header" then
      local v = headers:get(service.version_header)
      if v then found[#found + 1] = { source, v } end
    elseif source == "path" then
      if lead_raw then found[#found + 1] = { source, lead_raw } end
    elseif source == "suffix" then
      if suf_raw then found[#found + 1] = { source, suf_raw } end
    elseif source == "accept" then
      local accept = headers:get("accept")
      if accept then
        local out = {}
        accept_versions(accept, service.accept_vendor, out)
        for _, v in ipairs(out) do found[#found + 1] = { source, v } end
      end
    elseif source == "query" then
      if query then
        for k, v in query:gmatch("([^&=]+)=?([^&]*)") do
          if k == service.query_param then found[#found + 1] = { source, v } end
        end
      end
    elseif source == "grpc" then
      local ct = headers:get("content-type")
      if ct and ct:sub(1, 16) == "application/grpc" then
        local svc = path:match("^/([^/]*)/")
        if svc then
          for label in svc:gmatch("[^.]+") do
            if label:match("^[vV]%d+$") then
              found[#found + 1] = { source, label }
              break
            end
          end
        end
      end
    end
    if #found > before then used[source] = true end
  end

  local ct = headers:get("content-type")
  local grpc = ct ~= nil and ct:sub(1, 16) == "application/grpc"
  local requested
  for _, f in ipairs(found) do
    local v, err = parse_version(f[2])
    if not v then
      return reject(handle, service, "malformed-version", "Malformed API version",
        "The " .. f[1] .. " gives " .. json_string(f[2]) .. ", which is not a version: " .. err .. ".", nil, grpc)
    end
    if requested and not same_range(requested, v) then
      return reject(handle, service, "version-conflict", "Conflicting API versions",
        "The request asks for version " .. version_text(requested) .. " and " .. version_text(v) .. "; send one version.", nil, grpc)
    end
    requested = requested or v
  end
  local asked = requested or service.default

  local candidates = {}
  for _, d in ipairs(service.deployments) do
    if caret_matches(asked, d) then candidates[#candidates + 1] = d end
  end
  local text = version_text(asked)
  if #candidates == 0 then
    return reject(handle, service, "unsupported-version", "Unsupported API version",
      "No deployment of " .. service.name .. " serves version " .. text .. " (semver range ^" .. text
        .. "). Deployed: " .. table.concat(service.supported, ", ") .. ".", text, grpc)
  end

  local newest = candidates[#candidates]
  local line = service.lines[newest.major]
  local route = newest.route
  if line and line.size == #candidates then route = line.route end
  headers:replace(CATALOG.route_header, route)
  headers:replace(service.version_header, text)
  if service.sticky_header then
    local key = headers:get(service.sticky_header)
    key = key and key:match("^%s*(.-)%s*$")
    if key and key ~= "" then headers:replace("x-meshver-sticky", sticky_bucket(key)) end
  end
  if used.path or used.suffix or used.query then
    local p = path
    if used.path then p = lead_rest end
    if used.suffix then p = p:sub(1, #p - (#path - #suf_rest)) end
    if p == "" then p = "/" end
    if query then
      local kept = {}
      for pair in query:gmatch("[^&]+") do
        if not (used.query and (pair:match("^([^=]*)") == service.query_param)) then kept[#kept + 1] = pair end
      end
      if #kept > 0 then p = p .. "?" .. table.concat(kept, "&") end
    end
    headers:replace(":path", p)
  end
  handle:clearRouteCache()
end
