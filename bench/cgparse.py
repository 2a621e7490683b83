"""A small reader for callgrind output files (format version 1).

It gives, for one file:
  total       the Ir total (the 'summary:'/'totals:' line)
  excl        exclusive Ir per (object, function); code inlined into a
              function counts for that function
  calls       per (caller object, caller fn, callee object, callee fn):
              [number of calls, inclusive Ir of those calls]

callgrind_annotate attributes inlined code to "<counts for unidentified
lines>"; reading the file ourselves keeps it with the function it is in.
"""

import re

_KIND = {"ob": "ob", "cob": "ob", "fl": "fl", "fi": "fl", "fe": "fl",
         "cfi": "fl", "cfl": "fl", "fn": "fn", "cfn": "fn"}
_COMPRESSED = re.compile(r"^\((\d+)\)(?: (.*))?$")


def name_decoder():
    """A function (key, value) -> name that undoes callgrind's name
    compression: "(7) foo" defines 7 as foo for that kind of name (object,
    file, function), a later "(7)" means foo."""
    names = {"ob": {}, "fl": {}, "fn": {}}

    def name(key, val):
        table = names[_KIND[key]]
        m = _COMPRESSED.match(val)
        if not m:
            return val
        if m.group(2) is not None:
            table[m.group(1)] = m.group(2)
            return m.group(2)
        return table.get(m.group(1), val)
    return name


class Profile:
    def __init__(self, path):
        self.path = path
        self.total = 0
        self.excl = {}
        self.calls = {}
        self._parse()

    def _parse(self):
        name = name_decoder()
        ob = fn = None
        cob = cfn = None
        pending_calls = None

        with open(self.path, errors="replace") as f:
            for line in f:
                line = line.rstrip("\n")
                if not line or line[0] == "#":
                    continue
                c = line[0]
                if c.isdigit() or c in "+-*":
                    parts = line.split()
                    cost = int(parts[1]) if len(parts) > 1 else 0
                    if pending_calls is not None:
                        key = (ob, fn, cob, cfn)
                        e = self.calls.setdefault(key, [0, 0])
                        e[0] += pending_calls
                        e[1] += cost
                        pending_calls = None
                        cob = None      # cob= applies to one call only
                    else:
                        k = (ob, fn)
                        self.excl[k] = self.excl.get(k, 0) + cost
                    continue
                key, sep, val = line.partition("=")
                if sep:
                    if key == "ob":
                        ob = name(key, val)
                    elif key == "fn":
                        fn = name(key, val)
                        cob = None
                    elif key in ("fl", "fi", "fe", "cfi", "cfl"):
                        name(key, val)
                    elif key == "cob":
                        cob = name(key, val)
                    elif key == "cfn":
                        cfn = name(key, val)
                    elif key == "calls":
                        pending_calls = int(val.split()[0])
                        if cob is None:
                            cob = ob
                    continue
                if line.startswith("summary:") or line.startswith("totals:"):
                    self.total = int(line.split()[1])
        # cob applies to the next call only
        return self

    def calls_to(self, fn_name, caller_obj=None):
        """Number of calls to a function (by name, from anywhere)."""
        n = 0
        for (ob, fn, cob, cfn), (cnt, _) in self.calls.items():
            if short_fn(cfn) == fn_name and (caller_obj is None or caller_obj in ob):
                n += cnt
        return n

    def object_excl(self, obj_substr):
        return sum(v for (ob, _), v in self.excl.items()
                   if ob and obj_substr in ob)

    def attributable(self, obj_substr, exclude_callees=()):
        """Ir spent in an object's code plus everything it calls outside
        itself, except calls to exclude_callees (e.g. ap_pass_brigade from
        an output filter: the rest of the filter chain is not ours)."""
        total = self.object_excl(obj_substr)
        by_fn = {}
        for (ob, fn), v in self.excl.items():
            if ob and obj_substr in ob:
                by_fn[fn] = by_fn.get(fn, 0) + v
        for (ob, fn, cob, cfn), (cnt, incl) in self.calls.items():
            if not ob or obj_substr not in ob:
                continue
            if cob and obj_substr in cob:
                continue        # internal call: already in excl
            if short_fn(cfn) in exclude_callees:
                continue
            total += incl
            by_fn[fn] = by_fn.get(fn, 0) + incl
        return total, by_fn


    def attributable_detail(self, obj_substr, exclude_callees=()):
        """The same Ir as attributable(), split finer: {(function, part):
        Ir} where part is "self" (the function's own instructions, with
        what is inlined into it) or the name of a function outside the
        object that it calls (inclusive Ir of those calls)."""
        out = {}
        for (ob, fn), v in self.excl.items():
            if ob and obj_substr in ob:
                k = (short_fn(fn), "self")
                out[k] = out.get(k, 0) + v
        for (ob, fn, cob, cfn), (cnt, incl) in self.calls.items():
            if not ob or obj_substr not in ob:
                continue
            if cob and obj_substr in cob:
                continue
            if short_fn(cfn) in exclude_callees:
                continue
            k = (short_fn(fn), short_fn(cfn))
            out[k] = out.get(k, 0) + incl
        return out


def short_fn(fn):
    return re.sub(r"'\d+$", "", fn or "?")
