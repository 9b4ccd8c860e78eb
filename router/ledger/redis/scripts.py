"""The Redis ledger's Lua: every write (and every read of more than one key) is one
script, so it is atomic and one round trip.

Redis runs one script at a time, so "check available, then hold" inside a script is
what `BEGIN IMMEDIATE` is for SQLite: no two router instances can spend the same
micro-USD (I3). The rules are `LedgerModel`'s, in its order of checks.

Conventions, shared by every script:
- ARGV[1] is the key prefix ("aura:"); keys are built from it (one Redis, not a cluster).
- Money arrives and leaves as decimal strings of integers, or as Lua numbers that are
  exact integers (Redis replies with integers). A Lua number is never turned into a
  string by `tostring` or `..` (that rounds to 14 digits): `I(n)` formats it exactly.
  Balances change with HINCRBY (64-bit integers in Redis).
- Times are Python `repr(float)` strings, stored as given (exact round trip).
- An optional string is "" for None, else "+" followed by the value (`opt`).
- A result is a list whose first item says what happened ("ok", "replay",
  "insufficient", ...); Python turns refusals into `LedgerError`s.

Keys (after the prefix):
  acct:{account}            hash: balance, held, spent, seq (last entry), created_at
  accounts                  sorted set of every account id, all scores 0: the ids in byte
                            order for listings (ZRANGEBYLEX), added to by `ensure_account`
                            in the script that creates the account
  accounts:indexed          set once the accounts made before that index are in it
                            (ledger.py, `index_accounts`)
  entries:{account}         stream, id "{seq}-0": kind, amount, held_delta, balance_after,
                            at, [request_id], [reason]
  hold:{request_id}         hash: account, amount, deadline, model, n, at, settled,
                            [owner], [key_id], captured, released, checkpoint (provider, ck_*)
  holds:seq                 counter giving each hold its place (n)
  holds:open[:{account}]    sorted sets of unsettled holds, by n
  keyspend:{key_id}         captured + held under a capped key
  usage:rows                hash: request_id -> JSON array of the export's columns (strings)
  usage:by_at[:{account}]   sorted sets of request ids by `at` (ties by id, as bytes)
  instances, instances:lease  hashes: id -> JSON {host, pid, started_at}; id -> lease_until
  key:{sha256}, keys:id, keys:all, keys:by_account:{account}   router API keys (keys.py)
  idem:{len}:{account}:{key}, idem:req:{request_id}            idempotency (idempotency.py)
  outbox:sinks              set of the configured derived sinks (outbox.py)
  outbox:seq                counter giving each queued (or revived) event its place
  outbox:ev:{event_id}      hash: sink, request_id, account, [body], created_at, attempts,
                            next_at, state (pending | dead), [last_error], seq
  outbox:q:{sink}:{account} list of the pending event ids of one queue, oldest first
  outbox:ready              sorted set of queues ("{sink}:{account}") by their head's next_at
  outbox:pending, outbox:dead  sorted sets of event ids by seq, per state
  outbox:count              hash: sink -> its pending events
"""

from __future__ import annotations

from router.ledger.redis.client import Script

COMMON = r"""
local P = ARGV[1]
local function I(n) return string.format('%d', n) end
local function opt(s) if s == '' then return nil end return string.sub(s, 2) end
-- Every script that may create an account calls this: the account's hash and its place
-- in the index of ids, in the same atomic step.
local function ensure_account(account, at)
  redis.call('HSETNX', P .. 'acct:' .. account, 'created_at', at)
  redis.call('ZADD', P .. 'accounts', 'NX', 0, account)
end
local function state(account)
  local s = redis.call('HMGET', P .. 'acct:' .. account, 'balance', 'held')
  return tonumber(s[1]) or 0, tonumber(s[2]) or 0
end
local function append(account, kind, amount, held_delta, rid, reason, at)
  local ak = P .. 'acct:' .. account
  local balance = redis.call('HINCRBY', ak, 'balance', I(amount))
  local held = redis.call('HINCRBY', ak, 'held', I(held_delta))
  local seq = redis.call('HINCRBY', ak, 'seq', 1)
  local f = {'kind', kind, 'amount', I(amount), 'held_delta', I(held_delta),
             'balance_after', I(balance), 'at', at}
  if rid then f[#f + 1] = 'request_id'; f[#f + 1] = rid end
  if reason then f[#f + 1] = 'reason'; f[#f + 1] = reason end
  redis.call('XADD', P .. 'entries:' .. account, I(seq) .. '-0', unpack(f))
  return balance, held
end
local function forget(rid)
  local pk = P .. 'idem:req:' .. rid
  local ck = redis.call('GET', pk)
  if not ck then return 0 end
  redis.call('DEL', pk)
  local c = redis.call('HMGET', ck, 'request_id', 'done')
  if c[1] == rid and c[2] == '0' then redis.call('DEL', ck); return 1 end
  return 0
end
local function rows(ids)
  local out = {}
  for i = 1, #ids, 1000 do
    local chunk = {}
    for j = i, math.min(i + 999, #ids) do chunk[#chunk + 1] = ids[j] end
    for _, row in ipairs(redis.call('HMGET', P .. 'usage:rows', unpack(chunk))) do
      out[#out + 1] = row
    end
  end
  return out
end
"""

# ARGV: account, amount, reason?, at
GRANT = Script("grant", COMMON + r"""
local account, amount, reason, at = ARGV[2], tonumber(ARGV[3]), opt(ARGV[4]), ARGV[5]
local balance, held = state(account)
if amount < 0 and balance - held + amount < 0 then
  return {'insufficient', -amount, balance - held}
end
ensure_account(account, at)
local kind = 'grant'
if amount < 0 then kind = 'adjust' end
balance, held = append(account, kind, amount, 0, nil, reason, at)
return {'ok', balance, held}
""")

# ARGV: account, starting grant, at -> 1 if the account is new
OPEN_ACCOUNT = Script("open_account", COMMON + r"""
local account, grant, at = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local ak = P .. 'acct:' .. account
if redis.call('EXISTS', ak) == 1 then return 0 end
redis.call('HSET', ak, 'created_at', at, 'balance', '0', 'held', '0', 'spent', '0', 'seq', '0')
redis.call('ZADD', P .. 'accounts', 'NX', 0, account)
if grant > 0 then append(account, 'grant', grant, 0, nil, 'starting grant', at) end
return 1
""")

# ARGV: account, request id, amount, deadline, at, key_id?, key_cap ("" = none), owner?,
# model
HOLD = Script("hold", COMMON + r"""
local account, rid, amount_s, deadline, at = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local key_id, key_cap, owner, model = opt(ARGV[7]), ARGV[8], opt(ARGV[9]), ARGV[10]
local hk = P .. 'hold:' .. rid
if redis.call('EXISTS', hk) == 1 then return {'duplicate'} end
local amount = tonumber(amount_s)
local balance, held = state(account)
if amount > balance - held then return {'insufficient', amount, balance - held} end
local counted = key_id ~= nil and key_cap ~= ''
if counted then
  local spent = tonumber(redis.call('GET', P .. 'keyspend:' .. key_id)) or 0
  local remaining = tonumber(key_cap) - spent
  if amount > remaining then return {'cap', amount, math.max(remaining, 0)} end
end
ensure_account(account, at)
local n = redis.call('INCR', P .. 'holds:seq')
local f = {'account', account, 'amount', amount_s, 'deadline', deadline, 'model', model,
           'n', I(n), 'at', at, 'settled', '0'}
if owner then f[#f + 1] = 'owner'; f[#f + 1] = owner end
if counted then
  f[#f + 1] = 'key_id'; f[#f + 1] = key_id
  redis.call('INCRBY', P .. 'keyspend:' .. key_id, amount_s)
end
redis.call('HSET', hk, unpack(f))
redis.call('ZADD', P .. 'holds:open', I(n), rid)
redis.call('ZADD', P .. 'holds:open:' .. account, I(n), rid)
balance, held = append(account, 'hold', 0, amount, rid, nil, at)
return {'ok', balance, held}
""")

# The outbox (outbox.py): each (sink, account) queue is a list of event ids whose head
# alone is scored in `outbox:ready`, by its next_at; `rescore` keeps that true after
# every change to a queue.
OUTBOX_COMMON = r"""
local function rescore(q)
  local head = redis.call('LINDEX', P .. 'outbox:q:' .. q, 0)
  if head then
    redis.call('ZADD', P .. 'outbox:ready',
               redis.call('HGET', P .. 'outbox:ev:' .. head, 'next_at'), q)
  else
    redis.call('ZREM', P .. 'outbox:ready', q)
  end
end
-- Puts a pending event at the end of its queue (its hash already written).
local function enqueue(id, sink, account, seq, next_at)
  local q = sink .. ':' .. account
  if redis.call('RPUSH', P .. 'outbox:q:' .. q, id) == 1 then
    redis.call('ZADD', P .. 'outbox:ready', next_at, q)
  end
  redis.call('ZADD', P .. 'outbox:pending', seq, id)
  redis.call('HINCRBY', P .. 'outbox:count', sink, 1)
end
-- Takes a pending event out of its queue (the head, but wherever it is).
local function dequeue(id, sink, account)
  local q = sink .. ':' .. account
  local qk = P .. 'outbox:q:' .. q
  if redis.call('LINDEX', qk, 0) == id then redis.call('LPOP', qk)
  else redis.call('LREM', qk, 1, id) end
  rescore(q)
  redis.call('ZREM', P .. 'outbox:pending', id)
  if redis.call('HINCRBY', P .. 'outbox:count', sink, -1) <= 0 then
    redis.call('HDEL', P .. 'outbox:count', sink)
  end
end
local function queue_event(sink, rid, account, body, at)
  local id = sink .. '.' .. rid
  local ek = P .. 'outbox:ev:' .. id
  if redis.call('EXISTS', ek) == 1 then return end
  local seq = I(redis.call('INCR', P .. 'outbox:seq'))
  local f = {'sink', sink, 'request_id', rid, 'account', account, 'created_at', at,
             'attempts', '0', 'next_at', at, 'state', 'pending', 'seq', seq}
  if body then f[#f + 1] = 'body'; f[#f + 1] = body end
  redis.call('HSET', ek, unpack(f))
  enqueue(id, sink, account, seq, at)
end
-- A settlement's events: one per configured derived sink (in name order), then its
-- stored messages if any.
local function queue_events(rid, account, at, transcript)
  local sinks = redis.call('SMEMBERS', P .. 'outbox:sinks')
  table.sort(sinks)
  for _, sink in ipairs(sinks) do queue_event(sink, rid, account, nil, at) end
  if transcript then queue_event('messages', rid, account, transcript, at) end
end
"""

SETTLE_COMMON = OUTBOX_COMMON + r"""
-- rec: the usage row's strings: account, model, provider, input, output, cache read,
-- cache write, reasoning, reported, at, recovered. transcript: the body of a `messages`
-- event, or nil.
local function settle(rid, cost, at, rec, transcript)
  local hk = P .. 'hold:' .. rid
  local h = redis.call('HMGET', hk, 'account', 'amount', 'settled', 'captured', 'released',
                       'key_id')
  if not h[1] then return {'unknown'} end
  local account = h[1]
  if h[3] == '1' then
    local balance, held = state(account)
    return {'replay', tonumber(h[4]), tonumber(h[5]), balance, held}
  end
  if cost < 0 then return {'negative'} end
  local amount = tonumber(h[2])
  local captured = math.min(cost, amount)
  local released = amount - captured
  if captured > 0 then
    append(account, 'capture', -captured, -captured, rid, nil, at)
    redis.call('HINCRBY', P .. 'acct:' .. account, 'spent', I(captured))
  end
  if released > 0 then
    append(account, 'release', 0, -released, rid, nil, at)
    if h[6] then redis.call('DECRBY', P .. 'keyspend:' .. h[6], I(released)) end
  end
  redis.call('HSET', hk, 'settled', '1', 'captured', I(captured), 'released', I(released))
  redis.call('ZREM', P .. 'holds:open', rid)
  redis.call('ZREM', P .. 'holds:open:' .. account, rid)
  local row = cjson.encode({rid, rec[1], rec[2], rec[3], rec[4], rec[5], rec[6], rec[7],
                            rec[8], rec[9], I(captured), rec[10], I(cost - captured), rec[11]})
  redis.call('HSET', P .. 'usage:rows', rid, row)
  redis.call('ZADD', P .. 'usage:by_at', rec[10], rid)
  redis.call('ZADD', P .. 'usage:by_at:' .. rec[1], rec[10], rid)
  queue_events(rid, account, rec[10], transcript)
  local balance, held = state(account)
  return {'ok', captured, released, balance, held}
end
"""

# ARGV: request id, cost, at, then the record: account, model, provider, input, output,
# cache read, cache write, reasoning, reported (0/1), at, recovered (0/1); then the
# transcript? (the body of its `messages` event)
SETTLE = Script("settle", COMMON + SETTLE_COMMON + r"""
local rec = {}
for i = 5, 15 do rec[#rec + 1] = ARGV[i] end
return settle(ARGV[2], tonumber(ARGV[3]), ARGV[4], rec, opt(ARGV[16] or ''))
""")

# ARGV: request id, at. Settles from the last checkpoint (0 without one) and frees the
# dead request's Idempotency-Key claim.
RECOVER = Script("recover", COMMON + SETTLE_COMMON + r"""
local rid, at = ARGV[2], ARGV[3]
local h = redis.call('HMGET', P .. 'hold:' .. rid, 'account', 'model', 'provider', 'ck_in',
                     'ck_out', 'ck_cache_read', 'ck_cache_write', 'ck_reasoning',
                     'ck_reported', 'ck_cost', 'ck_at')
if not h[1] then return {'unknown'} end
local rec, cost
if h[11] then
  rec = {h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9], at, '1'}
  cost = tonumber(h[10])
else
  rec = {h[1], h[2], '', '0', '0', '0', '0', '0', '0', at, '1'}
  cost = 0
end
local out = settle(rid, cost, at, rec, nil)
if out[1] == 'ok' then forget(rid) end
return out
""")

# ARGV: groups of 10: request id, provider, input, output, cache read, cache write,
# reasoning, reported, cost, at. A figure is never lowered.
CHECKPOINT = Script("checkpoint", COMMON + r"""
local written = 0
for i = 2, #ARGV, 10 do
  local hk = P .. 'hold:' .. ARGV[i]
  local h = redis.call('HMGET', hk, 'settled', 'ck_cost', 'ck_at')
  if h[1] == '0' and (not h[3] or tonumber(h[2]) <= tonumber(ARGV[i + 8])) then
    redis.call('HSET', hk, 'provider', ARGV[i + 1], 'ck_in', ARGV[i + 2],
               'ck_out', ARGV[i + 3], 'ck_cache_read', ARGV[i + 4],
               'ck_cache_write', ARGV[i + 5], 'ck_reasoning', ARGV[i + 6],
               'ck_reported', ARGV[i + 7], 'ck_cost', ARGV[i + 8], 'ck_at', ARGV[i + 9])
    written = written + 1
  end
end
return written
""")

# ARGV: account? -> per unsettled hold, in the order taken: {id, account, amount,
# deadline, owner}
OPEN_HOLDS = Script("open_holds", COMMON + r"""
local key = P .. 'holds:open'
local account = opt(ARGV[2])
if account then key = key .. ':' .. account end
local out = {}
for _, rid in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  local h = redis.call('HMGET', P .. 'hold:' .. rid, 'account', 'amount', 'deadline', 'owner')
  out[#out + 1] = {rid, h[1], h[2], h[3], h[4]}
end
return out
""")

# ARGV: low, high (ZRANGEBYLEX bounds), limit -> {'ok', {id, balance, held} per account
# in the range, in byte order, at most `limit`}, or {'unindexed'} while the accounts
# written before the index may be missing from it
LIST_ACCOUNTS = Script("list_accounts", COMMON + r"""
if redis.call('EXISTS', P .. 'accounts:indexed') == 0 then return {'unindexed'} end
local out = {}
for _, account in ipairs(redis.call('ZRANGEBYLEX', P .. 'accounts', ARGV[2], ARGV[3],
                                    'LIMIT', 0, tonumber(ARGV[4]))) do
  local balance, held = state(account)
  out[#out + 1] = {account, balance, held}
end
return {'ok', out}
""")

# ARGV: account, limit -> usage rows, newest first
RECENT_USAGE = Script("recent_usage", COMMON + r"""
return rows(redis.call('ZREVRANGE', P .. 'usage:by_at:' .. ARGV[2], 0, tonumber(ARGV[3]) - 1))
""")

# One page of a walk through a usage index by `at`: up to `limit` request ids with
# scores from `low` to `high`, oldest first. `after` (the previous page's last request
# id, at score `low`) resumes inside a tie of equal `at`s: Redis orders a tie by member
# bytes, as SQLite orders request ids.
PAGE_IDS = r"""
local function page_ids(key, low, high, limit, after)
  local ids = {}
  if after then
    local seen = false
    for _, rid in ipairs(redis.call('ZRANGEBYSCORE', key, low, low)) do
      if seen and #ids < limit then ids[#ids + 1] = rid end
      if rid == after then seen = true end
    end
    low = '(' .. low
  end
  if #ids < limit then
    for _, rid in ipairs(redis.call('ZRANGEBYSCORE', key, low, high, 'LIMIT', 0,
                                    limit - #ids)) do
      ids[#ids + 1] = rid
    end
  end
  return ids
end
"""

# ARGV: account?, min score, max score, limit, after? -> one page of usage rows, oldest
# first (PAGE_IDS).
USAGE_PAGE = Script("usage_page", COMMON + PAGE_IDS + r"""
local key = P .. 'usage:by_at'
local account = opt(ARGV[2])
if account then key = key .. ':' .. account end
return rows(page_ids(key, ARGV[3], ARGV[4], tonumber(ARGV[5]), opt(ARGV[6])))
""")

# ARGV: since, bucket_s, buckets, min score, max score, limit, after? -> {partial totals,
# the page's last request id and its score (false when the page was empty), the page's
# row count}. One page of `usage:by_at` (PAGE_IDS) between the window's edges
# (router/ledger/totals.py), added up per bucket and model here: only the sums leave
# Redis. A row's bucket is floor((at - since) / bucket_s) in Lua numbers (doubles, as
# Python's floats: exact, totals.py). A Lua number adds integers exactly up to 2^53 - 1:
# a sum that would pass it is sent as it stands and started again, and a row with a
# figure past it is sent as its own stored strings. A total is {bucket, model, calls,
# billed, cost, input, output}, all exact decimal strings, that Python adds up (several
# may share a bucket and model).
USAGE_TOTALS = Script("usage_totals", COMMON + PAGE_IDS + r"""
local since, bs, n = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local key = P .. 'usage:by_at'
local ids = page_ids(key, ARGV[5], ARGV[6], tonumber(ARGV[7]), opt(ARGV[8]))
local MAX = 9007199254740991
local decode, number, floor = cjson.decode, tonumber, math.floor
local out, sums = {}, {}
local function send(s)
  out[#out + 1] = {I(s[1]), s[2], I(s[3]), I(s[4]), I(s[5]), I(s[6]), I(s[7])}
end
for _, raw in ipairs(rows(ids)) do
  if raw then
    local r = decode(raw)
    local gap = number(r[12]) - since
    local k = floor(gap / bs)
    if k >= 0 and k < n then
      local cost, input, output = number(r[11]), number(r[5]), number(r[6])
      local billed = 0
      if cost > 0 then billed = 1 end
      if cost > MAX or input > MAX or output > MAX then
        out[#out + 1] = {I(k), r[3], '1', I(billed), r[11], r[5], r[6]}
      else
        local of_bucket = sums[k]
        if not of_bucket then
          of_bucket = {}
          sums[k] = of_bucket
        end
        local s = of_bucket[r[3]]
        if s and (s[5] + cost > MAX or s[6] + input > MAX or s[7] + output > MAX) then
          send(s)
          s = nil
        end
        if not s then
          s = {k, r[3], 0, 0, 0, 0, 0}
          of_bucket[r[3]] = s
        end
        s[3] = s[3] + 1
        s[4] = s[4] + billed
        s[5] = s[5] + cost
        s[6] = s[6] + input
        s[7] = s[7] + output
      end
    end
  end
end
for _, of_bucket in pairs(sums) do
  for _, s in pairs(of_bucket) do send(s) end
end
local last = ids[#ids]
if not last then return {out, false, false, 0} end
return {out, last, redis.call('ZSCORE', key, last), #ids}
""")

# ARGV: id, JSON {host, pid, started_at}, lease_until
REGISTER_INSTANCE = Script("register_instance", COMMON + r"""
redis.call('HSET', P .. 'instances', ARGV[2], ARGV[3])
redis.call('HSET', P .. 'instances:lease', ARGV[2], ARGV[4])
return 1
""")

# ARGV: id, lease_until (an unknown instance is left alone)
RENEW_LEASE = Script("renew_lease", COMMON + r"""
if redis.call('HEXISTS', P .. 'instances', ARGV[2]) == 0 then return 0 end
redis.call('HSET', P .. 'instances:lease', ARGV[2], ARGV[3])
return 1
""")

INSTANCES = Script("instances", COMMON + r"""
return {redis.call('HGETALL', P .. 'instances'), redis.call('HGETALL', P .. 'instances:lease')}
""")

# --- router API keys (keys.py) -------------------------------------------------------

# ARGV: key hash, id, account, created_at, then the record's fields as name, value, ...
ISSUE_KEY = Script("issue_key", COMMON + r"""
local hash, id, account, at = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local f = {}
for i = 6, #ARGV do f[#f + 1] = ARGV[i] end
ensure_account(account, at)
redis.call('HSET', P .. 'key:' .. hash, unpack(f))
redis.call('HSET', P .. 'keys:id', id, hash)
redis.call('ZADD', P .. 'keys:all', at, id)
redis.call('ZADD', P .. 'keys:by_account:' .. account, at, id)
return 1
""")

# ARGV: account? -> each key's fields (a flat name, value list), oldest first
LIST_KEYS = Script("list_keys", COMMON + r"""
local key = P .. 'keys:all'
local account = opt(ARGV[2])
if account then key = P .. 'keys:by_account:' .. account end
local out = {}
for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
  local hash = redis.call('HGET', P .. 'keys:id', id)
  if hash then out[#out + 1] = redis.call('HGETALL', P .. 'key:' .. hash) end
end
return out
""")

# ARGV: id, at -> the key's fields after revocation (the first revocation's time stays)
REVOKE_KEY = Script("revoke_key", COMMON + r"""
local hash = redis.call('HGET', P .. 'keys:id', ARGV[2])
if not hash then return {} end
redis.call('HSETNX', P .. 'key:' .. hash, 'revoked_at', ARGV[3])
return redis.call('HGETALL', P .. 'key:' .. hash)
""")

# --- idempotency keys (idempotency.py) -----------------------------------------------

IDEMPOTENCY_COMMON = r"""
local function unclaim(ck, rid)
  redis.call('DEL', ck)
  local pk = P .. 'idem:req:' .. rid
  if redis.call('GET', pk) == ck then redis.call('DEL', pk) end
end
"""

# ARGV: claim, request id, body hash, now, stale after (s)
BEGIN_CLAIM = Script("begin_claim", COMMON + IDEMPOTENCY_COMMON + r"""
local ck, rid, digest, now = P .. 'idem:' .. ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local c = redis.call('HMGET', ck, 'body_hash', 'request_id', 'done', 'created_at')
if c[1] and c[3] == '0' and tonumber(now) - tonumber(c[4]) > tonumber(ARGV[6]) then
  unclaim(ck, c[2])
  c = {false}
end
if not c[1] then
  redis.call('HSET', ck, 'body_hash', digest, 'request_id', rid, 'done', '0',
             'created_at', now)
  redis.call('SET', P .. 'idem:req:' .. rid, ck)
  return {'new', rid}
end
if c[1] ~= digest then return {'mismatch', c[2]} end
if c[3] == '0' then return {'in_flight', c[2]} end
local r = redis.call('HMGET', ck, 'status', 'content_type', 'response')
return {'replay', c[2], tonumber(r[1]), r[2], r[3]}
""")

# ARGV: claim, status, content type, response
FINISH_CLAIM = Script("finish_claim", COMMON + r"""
local ck = P .. 'idem:' .. ARGV[2]
local rid = redis.call('HGET', ck, 'request_id')
if not rid then return 0 end
redis.call('HSET', ck, 'done', '1', 'status', ARGV[3], 'content_type', ARGV[4],
           'response', ARGV[5])
local pk = P .. 'idem:req:' .. rid
if redis.call('GET', pk) == ck then redis.call('DEL', pk) end
return 1
""")

# ARGV: claim -> frees it unless its answer is stored
ABANDON_CLAIM = Script("abandon_claim", COMMON + IDEMPOTENCY_COMMON + r"""
local ck = P .. 'idem:' .. ARGV[2]
local c = redis.call('HMGET', ck, 'request_id', 'done')
if c[1] and c[2] == '0' then unclaim(ck, c[1]); return 1 end
return 0
""")

# ARGV: request id -> frees the claim that request holds, unless its answer is stored
FORGET_REQUEST = Script("forget_request", COMMON + r"""
return forget(ARGV[2])
""")

# --- the outbox (outbox.py) -----------------------------------------------------------

# ARGV: the derived sinks every settlement from now on queues an event for
CONFIGURE_OUTBOX = Script("configure_outbox", COMMON + r"""
redis.call('DEL', P .. 'outbox:sinks')
if #ARGV > 1 then redis.call('SADD', P .. 'outbox:sinks', unpack(ARGV, 2)) end
return 1
""")

# ARGV: now, limit (negative: no limit), queues looked at (negative: all), lease until
# -> the claimed events' fields (flat name, value lists), oldest settlement first. The
# due queues looked at are those due the longest; of them, those whose heads were
# queued first are claimed, each head leased until `lease until`.
CLAIM_OUTBOX = Script("claim_outbox", COMMON + OUTBOX_COMMON + r"""
local now, limit, scan, lease_until = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
if limit == 0 then return {} end
local heads = {}
for _, q in ipairs(redis.call('ZRANGEBYSCORE', P .. 'outbox:ready', '-inf', now,
                              'LIMIT', 0, scan)) do
  local id = redis.call('LINDEX', P .. 'outbox:q:' .. q, 0)
  local seq = id and tonumber(redis.call('HGET', P .. 'outbox:ev:' .. id, 'seq'))
  if seq then heads[#heads + 1] = {seq, q, id} end
end
table.sort(heads, function(a, b) return a[1] < b[1] end)
local out = {}
for i = 1, #heads do
  if limit > 0 and i > limit then break end
  local ek = P .. 'outbox:ev:' .. heads[i][3]
  redis.call('HSET', ek, 'next_at', lease_until)
  redis.call('ZADD', P .. 'outbox:ready', lease_until, heads[i][2])
  out[#out + 1] = redis.call('HGETALL', ek)
end
return out
""")

# ARGV: event id -> 1 if a pending event was removed (delivered: it is gone)
OUTBOX_DELIVERED = Script("outbox_delivered", COMMON + OUTBOX_COMMON + r"""
local id = ARGV[2]
local ek = P .. 'outbox:ev:' .. id
local e = redis.call('HMGET', ek, 'sink', 'account', 'state')
if e[3] ~= 'pending' then return 0 end
redis.call('DEL', ek)
dequeue(id, e[1], e[2])
return 1
""")

# ARGV: event id, next_at, error -> 1 if the event was pending
OUTBOX_RETRY = Script("outbox_retry", COMMON + OUTBOX_COMMON + r"""
local id, next_at, err = ARGV[2], ARGV[3], ARGV[4]
local ek = P .. 'outbox:ev:' .. id
local e = redis.call('HMGET', ek, 'sink', 'account', 'state')
if e[3] ~= 'pending' then return 0 end
redis.call('HINCRBY', ek, 'attempts', 1)
redis.call('HSET', ek, 'next_at', next_at, 'last_error', err)
rescore(e[1] .. ':' .. e[2])
return 1
""")

# ARGV: event id, error, at -> 1 if a pending event is dead now (out of its queue)
OUTBOX_PARK = Script("outbox_park", COMMON + OUTBOX_COMMON + r"""
local id, err, at = ARGV[2], ARGV[3], ARGV[4]
local ek = P .. 'outbox:ev:' .. id
local e = redis.call('HMGET', ek, 'sink', 'account', 'state', 'seq')
if e[3] ~= 'pending' then return 0 end
redis.call('HINCRBY', ek, 'attempts', 1)
redis.call('HSET', ek, 'state', 'dead', 'last_error', err, 'next_at', at)
dequeue(id, e[1], e[2])
redis.call('ZADD', P .. 'outbox:dead', e[4], id)
return 1
""")

# ARGV: event id, now -> 1 if a dead event is pending again, at the end of its queue
OUTBOX_REVIVE = Script("outbox_revive", COMMON + OUTBOX_COMMON + r"""
local id, now = ARGV[2], ARGV[3]
local ek = P .. 'outbox:ev:' .. id
local e = redis.call('HMGET', ek, 'sink', 'account', 'state')
if e[3] ~= 'dead' then return 0 end
local seq = I(redis.call('INCR', P .. 'outbox:seq'))
redis.call('HSET', ek, 'state', 'pending', 'attempts', '0', 'next_at', now, 'seq', seq)
redis.call('ZREM', P .. 'outbox:dead', id)
enqueue(id, e[1], e[2], seq, now)
return 1
""")

# ARGV: state? ("pending" | "dead"; none: both), limit (negative: all) -> the events'
# fields (flat name, value lists) by seq
OUTBOX_LISTING = Script("outbox_listing", COMMON + r"""
local wanted, limit = opt(ARGV[2]), tonumber(ARGV[3])
if limit == 0 then return {} end
local stop = -1
if limit > 0 then stop = limit - 1 end
local function page(state)
  return redis.call('ZRANGE', P .. 'outbox:' .. state, 0, stop, 'WITHSCORES')
end
local ids = {}
if wanted == 'pending' or wanted == 'dead' then
  local got = page(wanted)
  for i = 1, #got, 2 do ids[#ids + 1] = {tonumber(got[i + 1]), got[i]} end
elseif not wanted then
  for _, state in ipairs({'pending', 'dead'}) do
    local got = page(state)
    for i = 1, #got, 2 do ids[#ids + 1] = {tonumber(got[i + 1]), got[i]} end
  end
  table.sort(ids, function(a, b) return a[1] < b[1] end)
end
local out = {}
for i = 1, #ids do
  if limit > 0 and i > limit then break end
  out[#out + 1] = redis.call('HGETALL', P .. 'outbox:ev:' .. ids[i][2])
end
return out
""")

# ARGV: request id -> {its usage row (JSON) or false, its hold's `at` or false}
OUTBOX_USAGE_ROW = Script("outbox_usage_row", COMMON + r"""
return {redis.call('HGET', P .. 'usage:rows', ARGV[2]),
        redis.call('HGET', P .. 'hold:' .. ARGV[2], 'at')}
""")
