-- Closed-loop load for loadgen.run_wrk: every connection sends one prepared request after another.
-- args: the request file (one request per block: method, path, body, then header lines, blocks split by a
-- line holding only "%%"), and the status a good response has. Requests are spread over the threads round robin,
-- so with as many requests as connections each connection keeps to about one account.
local threads = {}
local thread_count = 0

function setup(thread)
    thread:set("index", thread_count)
    thread_count = thread_count + 1
    table.insert(threads, thread)
end

local function read_blocks(path)
    local blocks, current = {}, {}
    for line in io.lines(path) do
        if line == "%%" then
            table.insert(blocks, current)
            current = {}
        else
            table.insert(current, line)
        end
    end
    return blocks
end

function init(args)
    expect = tonumber(args[2])
    bad = 0
    statuses = {}
    prepared = {}
    local blocks = read_blocks(args[1])
    local count = tonumber(args[3])
    for number, block in ipairs(blocks) do
        -- With fewer requests than threads, a thread takes one of them again.
        if (number - 1) % count == index or (#blocks < count and number == index % #blocks + 1) then
            local headers = {}
            for position = 4, #block do
                local name, value = block[position]:match("^([^:]+): (.*)$")
                headers[name] = value
            end
            local body = block[3] ~= "" and block[3] or nil
            table.insert(prepared, wrk.format(block[1], block[2], headers, body))
        end
    end
    position = 0
end

function request()
    position = position % #prepared + 1
    return prepared[position]
end

function response(status, headers, body)
    if status ~= expect then
        bad = bad + 1
        statuses[status] = (statuses[status] or 0) + 1
    end
end

function done(summary, latency, requests)
    local bad_total = 0
    local by_status = {}
    for _, thread in ipairs(threads) do
        bad_total = bad_total + thread:get("bad")
        for status, count in pairs(thread:get("statuses")) do
            by_status[status] = (by_status[status] or 0) + count
        end
    end
    io.write(string.format("RESULT requests=%d duration_us=%d bad=%d", summary.requests, summary.duration, bad_total))
    local errors = summary.errors
    io.write(string.format(" connect=%d read=%d write=%d timeout=%d\n", errors.connect, errors.read, errors.write,
        errors.timeout))
    for status, count in pairs(by_status) do
        io.write(string.format("STATUS %d %d\n", status, count))
    end
    for p = 1, 99 do
        io.write(string.format("PCT %d %d\n", p, latency:percentile(p)))
    end
end
