// score-router-js: routes an MQL with a fit-score model, in JavaScript.
//
// The same model as score-router-py: score the lead from firmographics and
// engagement, send high scorers to the region's enterprise team and the
// rest to its standard team, and give the lead to the available rep with
// the fewest leads today for their weight (counts in the plugin's durable
// state). Nobody available: the fallback owner. Emits on `routed` the same
// `routing` object as the standard `route` plugin.
//
// Build: see plugins/README.md
// (componentize-js router.js --wit wit -n score-router -d http -d fetch-event -o score-router-js.wasm).

import { teams, getRep, availabilityAt } from 'handoff:plugin/roster@0.1.1';
import { get, increment } from 'handoff:plugin/state@0.1.1';
import { now } from 'handoff:plugin/clock@0.1.1';
import { log } from 'handoff:plugin/log@0.1.1';
import { describe as descriptor, emit, nodeError, parse } from './handoff-plugin.js';

const REGIONS = {
  EMEA: ['germany', 'france', 'united kingdom', 'ireland', 'netherlands', 'belgium', 'italy', 'spain',
    'sweden', 'norway', 'denmark', 'finland', 'switzerland', 'austria', 'poland', 'united arab emirates'],
  NA: ['united states', 'canada'],
  APAC: ['japan', 'china', 'india', 'singapore', 'australia', 'new zealand', 'south korea'],
};

const CONFIG_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['teams', 'fallback_owner_id'],
  properties: {
    threshold: { type: 'number', default: 60 },
    teams: {
      type: 'object',
      additionalProperties: {
        type: 'object',
        required: ['enterprise', 'standard'],
        properties: { enterprise: { type: 'string' }, standard: { type: 'string' } },
      },
    },
    fallback_owner_id: { type: 'string' },
    fallback_owner_name: { type: 'string' },
  },
};

const number = (properties, name) => Number(properties[name] ?? 0) || 0;

function fitScore(properties) {
  const size = Math.min(Math.log10(Math.max(number(properties, 'numemployees'), 1)) / 4, 1) * 35;
  const score = Math.min(number(properties, 'hubspotscore'), 100) * 0.35;
  const intent = Math.min(number(properties, 'pricing_page_views'), 5) * 4;
  const icp = { A: 10, B: 5 }[properties.icp_fit ?? ''] ?? 0;
  return Math.round((size + score + intent + icp) * 10) / 10;
}

function region(country) {
  const c = (country ?? '').trim().toLowerCase();
  return Object.keys(REGIONS).find((name) => REGIONS[name].includes(c));
}

function pick(teamId, at, trail) {
  const team = teams().find((t) => t.id === teamId);
  if (!team) {
    trail.push(`team ${teamId} is not on the roster`);
    return undefined;
  }
  let best;
  for (const member of team.members) {
    const rep = getRep(member);
    if (!rep) continue;
    const availability = availabilityAt(member, at);
    if (!availability.available) {
      trail.push(`${rep.name} skipped: ${availability.reason}`);
      continue;
    }
    const key = `load:${rep.id}:${availability.localDate}`;
    const load = Number(get(key) ?? 0);
    if (rep.dailyCapacity && load >= rep.dailyCapacity) {
      trail.push(`${rep.name} skipped: at daily capacity (${load}/${rep.dailyCapacity})`);
      continue;
    }
    const ratio = load / Math.max(rep.weight, 1);
    if (!best || ratio < best.ratio) best = { ratio, rep, key };
  }
  if (!best) {
    trail.push(`nobody on ${team.name} is available`);
    return undefined;
  }
  increment(best.key, 1n);
  trail.push(`chose ${best.rep.name} (fewest leads today for their weight)`);
  return best.rep;
}

export function describe() {
  return descriptor({
    name: 'score-router-js',
    version: '0.1.0',
    description: 'Routes by a fit-score model to enterprise or standard teams, least-loaded rep first (JavaScript)',
    outputs: ['routed'],
    capabilities: ['roster:read', 'state:read', 'state:write'],
    configSchema: CONFIG_SCHEMA,
    lead: { routed: { state: 'routed', detail: '{/routing/explanation}', owner: '/routing/owner_name' } },
  });
}

export function run(ctx, item) {
  const { config, item: lead } = parse(ctx, item);
  const properties = lead.properties ?? {};
  const score = fitScore(properties);
  const trail = [`fit score ${score}`];
  let owner;
  try {
    const regionTeams = config.teams[region(properties.country) ?? ''];
    if (!regionTeams) {
      trail.push(`no team covers ${properties.country ?? 'an unknown country'}`);
    } else {
      const tier = score >= (config.threshold ?? 60) ? 'enterprise' : 'standard';
      trail.push(`${tier} tier`);
      owner = pick(regionTeams[tier], now(), trail);
    }
  } catch (error) {
    throw nodeError(error);
  }
  if (!owner) trail.push(`fell back to ${config.fallback_owner_name ?? 'the queue'}`);
  lead.routing = {
    owner_id: owner ? owner.id : config.fallback_owner_id,
    owner_name: owner ? owner.name : (config.fallback_owner_name ?? 'Lead queue'),
    owner_email: owner ? owner.email : '',
    owner_kind: owner ? 'user' : 'queue',
    team: owner ? owner.team : null,
    rule: 'fit score',
    fallback: !owner,
    score,
    trail,
    explanation: trail.join('; '),
  };
  log('info', `${ctx.node}: ${lead.routing.explanation}`);
  return [emit('routed', lead)];
}
