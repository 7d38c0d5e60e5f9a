"""No user text reaches exec/compile; evaluation imports, opens and spawns nothing."""

import sys

from loyalty_engine.program import load_program
from tests.conftest import member, purchase

MARKER = "zz_MARK_9f3b"
PROGRAM = (
    'program "T" { currency CNY  timezone "Asia/Shanghai" }\n'
    f"coupon {MARKER}C {{ discount 10%  valid 3 days }}\n"
    f"rule \"{MARKER} __import__('os').system('echo pwned')\" on purchase when channel == \"{MARKER}\" or net_amount > 1 {{\n"
    f"  award 1 point per 1 CNY of net_amount\n  issue coupon {MARKER}C\n"
    f'  send sms "hello {{member.name}} {MARKER}\\" + __import__(\'os\')"\n'
    "}\n"
)

events: list = []


def _hook(event, args):
    if event in ("exec", "compile") or event in ("import", "open", "subprocess.Popen", "os.system", "os.exec"):
        events.append((event, args))


sys.addaudithook(_hook)


def test_generated_code_never_contains_rule_file_text():
    events.clear()
    program = load_program("safety.loy", text=PROGRAM)
    compiled = [args for name, args in events if name == "compile"]
    sources = [a[0] for a in compiled if isinstance(a[0], (str, bytes))]
    assert sources, "the compiler should have compiled generated code"
    for src in sources:
        text = src.decode() if isinstance(src, bytes) else src
        assert MARKER not in text
        assert "__import__" not in text
    for plan in program.code.events.values():
        assert MARKER not in plan.source

    warm = program.evaluate(purchase(("A", "coffee", 1, "20.00")), member())
    _ = warm.effects, warm.hints  # first use loads the engine's own explain/hints modules
    events.clear()
    outcome = program.evaluate(purchase(("A", "coffee", 1, "20.00")), member())
    assert outcome.points == 20
    assert outcome.coupons == (f"{MARKER}C",)
    message = [e for e in outcome.effects if e.type == "message"][0]
    assert message.text == f"hello 王芳 {MARKER}\" + __import__('os')"
    _ = outcome.hints
    risky = [(n, a) for n, a in events if n in ("import", "open", "subprocess.Popen", "os.system", "os.exec")]
    assert risky == []
    for name, args in events:
        if name == "compile":
            src = args[0]
            text = src.decode() if isinstance(src, bytes) else str(src)
            assert MARKER not in text
