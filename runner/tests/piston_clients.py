"""Piston client libraries from PyPI against a real `runner serve`.

    python piston_clients.py BASE_URL KEY

BASE_URL is the server (http://127.0.0.1:PORT); KEY an API key of a learner.
The server must have an anonymous tenant (pistonapi cannot send a key).
Each client is used as its README shows a new user; every check prints one
line, and the exit code is the number of failed checks. Run by
service_e2e.rs::piston_client_libraries_work_unchanged, with the virtual
environment .ci/setup makes.
"""
import asyncio
import os
import sys
import traceback

BASE, KEY = sys.argv[1], sys.argv[2]
V2 = BASE + "/api/v2"

HELLO = 'import sys\nprint("hello " + sys.stdin.read().strip() + " " + " ".join(sys.argv[1:]))\n'
# Does not compile: Piston puts the compile stage in `run` too.
BROKEN_C = "int main(void) { return }\n"
# The pauses let each write reach the sandbox before the next (two pipes
# written at once have no order to keep).
BOTH = ('import sys, time\nprint("out", flush=True)\ntime.sleep(0.2)\n'
        'print("err", file=sys.stderr, flush=True)\ntime.sleep(0.2)\nprint("out2", flush=True)\n')

failures = 0


def check(client, what, fn):
    global failures
    try:
        detail = fn()
        print(f"ok    {client}: {what}" + (f" ({detail})" if detail else ""))
    except Exception as e:  # noqa: BLE001 - every failure is reported, then counted
        failures += 1
        print(f"FAIL  {client}: {what}: {type(e).__name__}: {e}")
        traceback.print_exc(limit=3, file=sys.stdout)


def expect(cond, message):
    if not cond:
        raise AssertionError(message)


def pistonapi_checks():
    from pistonapi import PistonAPI
    from pistonapi.exceptions import PistonError

    piston = PistonAPI(endpoint=V2)

    def runtimes():
        rt = piston.runtimes
        expect("python" in rt and "c" in rt, f"runtimes: {sorted(rt)}")
        return f"{len(rt)} languages"

    def execute():
        # pistonapi posts a form body, which Piston refuses with 415 and
        # {"message": ...}; the client must see exactly that error.
        try:
            out = piston.execute(language="python", version="3", code=HELLO)
        except PistonError as e:
            expect("application/json" in str(e), f"message: {e}")
            return f"refused as Piston refuses it: {e}"
        raise AssertionError(f"a form body was accepted: {out!r}")

    check("pistonapi", "runtimes", runtimes)
    check("pistonapi", "execute (form body)", execute)


def aiopyston_checks():
    from pyston import File, PystonClient

    async def main():
        client = PystonClient(api_key=KEY, base_url=V2 + "/")
        try:
            results = {}

            async def runtimes():
                rts = await client.runtimes()
                expect(any(r.language == "python" for r in rts), "no python runtime")
                return len(rts)

            async def hello():
                out = await client.execute("python", [File(HELLO)], stdin="world", args=["a", "b"])
                expect(str(out) == "hello world a b\n", f"output {str(out)!r}")

            async def compile_error():
                out = await client.execute("c", [File(BROKEN_C, "main.c")])
                expect(out.compile_stage is not None and out.compile_stage.code != 0, "compile stage")
                expect(out.run_stage is not None, "no run stage")
                expect(out.run_stage.code == out.compile_stage.code, "run is not the compile stage")
                expect("error" in str(out), f"output {str(out)!r}")

            async def interleaved():
                out = await client.execute("py", [File(BOTH)])
                expect(str(out) == "out\nerr\nout2\n", f"output {str(out)!r}")

            for name, fn in [("runtimes/ (trailing slash)", runtimes), ("execute/ hello with stdin and args", hello),
                             ("compile error fills run", compile_error), ("combined output interleaved", interleaved)]:
                try:
                    results[name] = (await fn(), None)
                except Exception as e:  # noqa: BLE001
                    results[name] = (None, e)
            return results
        finally:
            await client.close_session()

    results = asyncio.run(main())
    for name, (detail, err) in results.items():
        def report(detail=detail, err=err):
            if err:
                raise err
            return detail
        check("aiopyston", name, report)


def ultra_piston_checks():
    from ultra_piston import File, PistonClient

    piston = PistonClient(api_key=KEY, base_url=V2, rate_limit=0.01)

    def runtimes():
        rts = piston.get_runtimes()
        expect(any(r.language == "c" for r in rts), "no c runtime")
        return len(rts)

    def hello():
        out = piston.post_execute("python", "3.11.2", File(content=HELLO), stdin="there", args=["x"])
        expect(out.run.output == "hello there x\n", f"output {out.run.output!r}")
        expect(out.run.code == 0, f"code {out.run.code}")

    def compile_error():
        out = piston.post_execute("c", "*", File(name="main.c", content=BROKEN_C))
        expect(out.compile is not None and out.compile.code not in (None, 0), f"compile {out.compile}")
        expect(out.run.code == out.compile.code, "run is not the compile stage")

    def empty_name():
        out = piston.post_execute("python", "*", File(name="", content='print("unnamed")'))
        expect(out.run.stdout == "unnamed\n", f"stdout {out.run.stdout!r}")

    async def hello_async():
        out = await piston.post_execute_async("python", "*", File(content=HELLO), stdin="async")
        expect(out.run.stdout == "hello async \n", f"stdout {out.run.stdout!r}")

    check("ultra-piston", "runtimes", runtimes)
    check("ultra-piston", "execute hello with stdin and args", hello)
    check("ultra-piston", "compile error parses (run filled)", compile_error)
    check("ultra-piston", "a file named \"\" gets the default name", empty_name)
    check("ultra-piston", "execute (async)", lambda: asyncio.run(hello_async()))


def piston_rspy_checks():
    import piston_rspy as p

    client = p.Client.with_url_and_key(V2, KEY)

    async def runtimes():
        rts = await client.fetch_runtimes()
        expect(any(r.language == "python" for r in rts), "no python runtime")
        return len(rts)

    async def hello():
        ex = p.Executor().set_language("python").set_version("*").add_file(
            p.File().set_content(HELLO).set_name("main.py")).set_stdin("rs").add_arg("z")
        r = await client.execute(ex)
        expect(r.is_ok(), f"status {r.status}")
        expect(r.run.output == "hello rs z\n", f"output {r.run.output!r}")

    async def compile_error():
        ex = p.Executor().set_language("c").set_version("*").add_file(
            p.File().set_content(BROKEN_C).set_name("main.c"))
        r = await client.execute(ex)
        expect(r.compile is not None and r.compile.is_err(), "compile stage")
        expect(r.run.code == r.compile.code, "run is not the compile stage")

    check("piston-rspy", "runtimes", lambda: asyncio.run(runtimes()))
    check("piston-rspy", "execute hello with stdin and args", lambda: asyncio.run(hello()))
    check("piston-rspy", "compile error parses (run filled)", lambda: asyncio.run(compile_error()))


for suite in (pistonapi_checks, aiopyston_checks, ultra_piston_checks, piston_rspy_checks):
    try:
        suite()
    except Exception as e:  # noqa: BLE001 - an import failure fails the suite
        failures += 1
        print(f"FAIL  {suite.__name__}: {type(e).__name__}: {e}")
print(f"{failures} failed", flush=True)
# Leave without running finalizers: the native client's runtime can abort
# the interpreter on its way out, which would hide the count.
os._exit(min(failures, 100))
