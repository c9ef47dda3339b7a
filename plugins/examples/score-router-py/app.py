"""score-router-py: routes an MQL with a fit-score model, in Python.

It scores the lead from its firmographics and engagement, sends high scorers
to the region's enterprise team and the rest to its standard team, and gives
the lead to the available rep with the least leads today relative to their
weight (counts kept in the plugin's durable state). Nobody available: the
fallback owner. Emits on `routed` the same `routing` object as the standard
`route` plugin, plus the score, so `assign` and `notify` work unchanged.

Build: see plugins/README.md (componentize-py -d wit -w score-router componentize app -o score-router-py.wasm).
"""

import math

import wit_world
from componentize_py_types import Err
from wit_world.imports import clock, log, roster, state
from wit_world.imports.types import Context, Descriptor, Emit

from handoff_plugin import describe, emit, node_error, parse

REGIONS = {
    "EMEA": {"germany", "france", "united kingdom", "ireland", "netherlands", "belgium", "italy", "spain",
             "sweden", "norway", "denmark", "finland", "switzerland", "austria", "poland", "united arab emirates"},
    "NA": {"united states", "canada"},
    "APAC": {"japan", "china", "india", "singapore", "australia", "new zealand", "south korea"},
}

CONFIG_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["teams", "fallback_owner_id"],
    "properties": {
        "threshold": {"type": "number", "default": 60, "description": "Fit score (0-100) from which a lead goes to the enterprise team."},
        "teams": {
            "type": "object",
            "description": "Region (EMEA, NA, APAC) to {\"enterprise\": team id, \"standard\": team id}.",
            "additionalProperties": {
                "type": "object",
                "required": ["enterprise", "standard"],
                "properties": {"enterprise": {"type": "string"}, "standard": {"type": "string"}},
            },
        },
        "fallback_owner_id": {"type": "string"},
        "fallback_owner_name": {"type": "string"},
    },
}


def number(properties, name):
    try:
        return float(properties.get(name) or 0)
    except (TypeError, ValueError):
        return 0.0


def fit_score(properties):
    """0-100: company size (log scale), lead score, pricing-page intent, ICP fit."""
    size = min(math.log10(max(number(properties, "numemployees"), 1)) / 4, 1) * 35
    score = min(number(properties, "hubspotscore"), 100) * 0.35
    intent = min(number(properties, "pricing_page_views"), 5) * 4
    icp = {"A": 10, "B": 5}.get(properties.get("icp_fit") or "", 0)
    return round(size + score + intent + icp, 1)


def region(country):
    country = (country or "").strip().lower()
    return next((name for name, members in REGIONS.items() if country in members), None)


def pick(team_id, now, trail):
    teams = {team.id: team for team in roster.teams()}
    team = teams.get(team_id)
    if team is None:
        trail.append(f"team {team_id} is not on the roster")
        return None
    best = None
    for member in team.members:
        rep = roster.get_rep(member)
        if rep is None:
            continue
        availability = roster.availability_at(member, now)
        if not availability.available:
            trail.append(f"{rep.name} skipped: {availability.reason}")
            continue
        key = f"load:{rep.id}:{availability.local_date}"
        load = int(state.get(key) or 0)
        if rep.daily_capacity and load >= rep.daily_capacity:
            trail.append(f"{rep.name} skipped: at daily capacity ({load}/{rep.daily_capacity})")
            continue
        ratio = load / max(rep.weight, 1)
        if best is None or ratio < best[0]:
            best = (ratio, rep, key)
    if best is None:
        trail.append(f"nobody on {team.name} is available")
        return None
    _, rep, key = best
    state.increment(key, 1)
    trail.append(f"chose {rep.name} (fewest leads today for their weight)")
    return rep


class WitWorld(wit_world.WitWorld):
    def describe(self) -> Descriptor:
        return describe(
            "score-router-py",
            "0.1.0",
            "Routes by a fit-score model to enterprise or standard teams, least-loaded rep first (Python)",
            outputs=["routed"],
            capabilities=["roster:read", "state:read", "state:write"],
            config_schema=CONFIG_SCHEMA,
            lead={"routed": {"state": "routed", "detail": "{/routing/explanation}", "owner": "/routing/owner_name"}},
        )

    def run(self, ctx: Context, item: str) -> list[Emit]:
        config, lead = parse(ctx, item)
        properties = lead.get("properties") or {}
        score = fit_score(properties)
        trail = [f"fit score {score}"]
        try:
            owner = None
            teams = config["teams"].get(region(properties.get("country")) or "")
            if teams is None:
                trail.append(f"no team covers {properties.get('country') or 'an unknown country'}")
            else:
                tier = "enterprise" if score >= config.get("threshold", 60) else "standard"
                trail.append(f"{tier} tier")
                owner = pick(teams[tier], clock.now(), trail)
        except Err as error:
            raise Err(node_error(error))
        if owner is None:
            trail.append(f"fell back to {config.get('fallback_owner_name', 'the queue')}")
        routing = {
            "owner_id": owner.id if owner else config["fallback_owner_id"],
            "owner_name": owner.name if owner else config.get("fallback_owner_name", "Lead queue"),
            "owner_email": owner.email if owner else "",
            "owner_kind": "user" if owner else "queue",
            "team": owner.team if owner else None,
            "rule": "fit score",
            "fallback": owner is None,
            "score": score,
            "trail": trail,
            "explanation": "; ".join(trail),
        }
        log.log(log.Level.INFO, f"{ctx.node}: {routing['explanation']}")
        lead["routing"] = routing
        return [emit("routed", lead)]
