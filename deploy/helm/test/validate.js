#!/usr/bin/env node
// Validates what `helm template` rendered for the pushd chart (Helm has already checked the values
// against values.schema.json, and that every document parses):
//  1. every object against its Kubernetes schema (kubernetes-models), failing on unknown fields,
//     which those schemas alone let through;
//  2. the wiring between objects: selectors match pods, named ports and volumes exist, every
//     --*_file argument names a file in a read-only mount, the grace period outlasts the drain,
//     every PUSHD_* variable and --flag is one pushd knows;
//  3. NOTES.txt, when given (run.sh renders it with Helm: `notes: <text>`), says how to push.
// Usage: node validate.js MANIFESTS_YAML CONFIG_CC [NOTES_YAML]
// Exit 0 and one summary line when all is well; exit 1 with one line per problem otherwise.
'use strict';

const fs = require('fs');
const YAML = require('yaml');

const [manifestsFile, configCc, notesFile] = process.argv.slice(2);
if (!configCc) {
  console.error('usage: node validate.js MANIFESTS_YAML CONFIG_H [NOTES_YAML]');
  process.exit(2);
}
const problems = [];
// YAML 1.1 as Kubernetes reads it (sigs.k8s.io/yaml): unquoted yes/no/on/off are booleans.
const parse = (file) => YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'), { version: '1.1' });

// Helm's documents, each after a "# Source: <chart>/templates/<file>" comment.
const objects = [];
for (const doc of parse(manifestsFile)) {
  const comment = `${doc.commentBefore || ''}\n${(doc.contents && doc.contents.commentBefore) || ''}`;
  const source = (comment.match(/^ ?Source: (\S+)/m) || [])[1] || '?';
  for (const e of doc.errors) problems.push(`${source}: ${e.message}`);
  const obj = doc.errors.length ? null : doc.toJS();
  if (obj === null || obj === undefined) continue;
  if (typeof obj !== 'object' || Array.isArray(obj)) {
    problems.push(`${source}: not a Kubernetes object`);
    continue;
  }
  objects.push({ source, obj });
}
if (objects.length === 0) problems.push(`${manifestsFile}: no objects`);

// 1. Kubernetes schemas, with unknown fields detected by watching what the validator reads: the
// compiled validators read every property their schema declares and enumerate the keys of maps
// (labels, resources, ...), so an own key of a plain object that was neither read nor enumerated
// is a field the schema does not have.
function modelFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : [null, apiVersion];
  const candidates = group
    ? [`kubernetes-models/${group}/${version}/${kind}`,
       `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`]
    : [`kubernetes-models/${version}/${kind}`];
  for (const candidate of candidates) {
    try {
      return require(candidate)[kind];
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND' && e.code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED') throw e;
    }
  }
  return null;
}

function watch(target, seen) {
  if (target === null || typeof target !== 'object') return target;
  if (seen.proxies.has(target)) return seen.proxies.get(target);
  const record = { read: new Set(), enumerated: false };
  seen.records.set(target, record);
  const proxy = new Proxy(target, {
    get(t, key, receiver) {
      if (typeof key === 'string') record.read.add(key);
      return watch(Reflect.get(t, key, receiver), seen);
    },
    has(t, key) {
      if (typeof key === 'string') record.read.add(key);
      return Reflect.has(t, key);
    },
    ownKeys(t) {
      record.enumerated = true;
      return Reflect.ownKeys(t);
    },
  });
  seen.proxies.set(target, proxy);
  return proxy;
}

function unknownFields(value, where, seen, out) {
  if (Array.isArray(value)) {
    value.forEach((item, i) => unknownFields(item, `${where}[${i}]`, seen, out));
    return;
  }
  if (value === null || typeof value !== 'object') return;
  // An object the validator never looked into is free-form in the schema: nothing to judge.
  const record = seen.records.get(value);
  for (const key of Object.keys(value)) {
    if (record && !record.enumerated && !record.read.has(key)) {
      out.push(`${where}.${key}`);
    } else {
      unknownFields(value[key], `${where}.${key}`, seen, out);
    }
  }
}

const names = new Set();
for (const { source, obj } of objects) {
  const id = `${source}: ${obj.kind || '?'}/${(obj.metadata && obj.metadata.name) || '?'}`;
  if (!obj.apiVersion || !obj.kind) {
    problems.push(`${id}: no apiVersion or kind`);
    continue;
  }
  const key = `${obj.apiVersion}/${obj.kind}/${obj.metadata && obj.metadata.name}`;
  if (names.has(key)) problems.push(`${id}: rendered twice`);
  names.add(key);
  const Model = modelFor(obj.apiVersion, obj.kind);
  if (!Model) {
    problems.push(`${id}: no schema for ${obj.apiVersion} ${obj.kind}`);
    continue;
  }
  const seen = { proxies: new WeakMap(), records: new WeakMap() };
  try {
    Model.prototype.validate.call(watch(obj, seen));
  } catch (e) {
    problems.push(`${id}: ${e.message}`);
    continue;
  }
  const unknown = [];
  unknownFields(obj, '', seen, unknown);
  for (const field of unknown) problems.push(`${id}: unknown field ${field.slice(1)}`);
}

// 2. Wiring between the objects.
const byKind = (kind) => objects.filter((o) => o.obj.kind === kind).map((o) => o.obj);
const matches = (selector, labels) =>
  Object.entries(selector || {}).every(([k, v]) => (labels || {})[k] === v);
const workloads = [...byKind('Deployment'), ...byKind('StatefulSet')];
const podsMatching = (selector) =>
  selector && Object.keys(selector).length > 0
    ? workloads.filter((w) => matches(selector, w.spec.template.metadata.labels))
    : [];

// pushd's flags: the entries F(type, name, ...) and D(type, name, ...) of PUSHD_FLAGS.
const flagRe = /^\s*[FD]\(\s*[^,]+,\s*([a-z0-9_]+)\s*,/gm;
const knownFlags = new Set([...fs.readFileSync(configCc, 'utf8').matchAll(flagRe)].map((m) => m[1]));
if (knownFlags.size === 0) problems.push(`${configCc}: found no PUSHD_FLAGS entries`);

for (const w of workloads) {
  const id = `${w.kind}/${w.metadata.name}`;
  if (!matches(w.spec.selector.matchLabels, w.spec.template.metadata.labels)) {
    problems.push(`${id}: selector does not match its pod labels`);
  }
  const pod = w.spec.template.spec;
  const volumes = new Set([
    ...(pod.volumes || []).map((v) => v.name),
    ...(w.spec.volumeClaimTemplates || []).map((v) => v.metadata.name),
  ]);
  for (const c of pod.containers) {
    const ports = new Set((c.ports || []).map((p) => p.name));
    for (const m of c.volumeMounts || []) {
      if (!volumes.has(m.name)) problems.push(`${id}: mount ${m.name} has no volume`);
    }
    for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
      const port = probe && ((probe.httpGet && probe.httpGet.port) || (probe.tcpSocket && probe.tcpSocket.port));
      if (typeof port === 'string' && !ports.has(port)) problems.push(`${id}: probe port ${port} not declared`);
    }
    const env = (c.env || []).map((e) => e.name);
    const dup = env.filter((n, i) => env.indexOf(n) !== i);
    if (dup.length) problems.push(`${id}: env set twice: ${dup.join(', ')}`);
    if (c.name !== 'pushd') continue;

    for (const name of env.filter((n) => n.startsWith('PUSHD_'))) {
      if (!knownFlags.has(name.slice(6).toLowerCase())) problems.push(`${id}: ${name} is no pushd flag`);
    }
    const args = c.args || [];
    for (const arg of args) {
      const m = /^--([a-z0-9_]+)=/.exec(arg);
      if (!m || !knownFlags.has(m[1])) problems.push(`${id}: argument ${arg} is no --flag=value of pushd`);
    }
    // Key, certificate and password files come from mounted Secrets and ConfigMaps: the file must
    // lie in a read-only mount of this container.
    for (const arg of args) {
      const m = /^--([a-z0-9_]+_file)=(.*)$/.exec(arg);
      if (!m) continue;
      const mount = (c.volumeMounts || []).find(
        (vm) => m[2].startsWith(`${vm.mountPath.replace(/\/$/, '')}/`));
      if (!mount) {
        problems.push(`${id}: --${m[1]} ${m[2]} is in no volume mount`);
      } else if (mount.readOnly !== true) {
        problems.push(`${id}: --${m[1]} ${m[2]} is in mount ${mount.name}, which is not read-only`);
      }
    }
    const drain = args.map((a) => /^--drain_timeout=(\d+)s$/.exec(a)).find(Boolean);
    const sleep = c.lifecycle && c.lifecycle.preStop && c.lifecycle.preStop.exec
      ? Number(c.lifecycle.preStop.exec.command[1]) : 0;
    if (!drain) {
      problems.push(`${id}: no --drain_timeout=Ns argument`);
    } else if (!(pod.terminationGracePeriodSeconds > Number(drain[1]) + sleep)) {
      problems.push(`${id}: terminationGracePeriodSeconds ${pod.terminationGracePeriodSeconds} ` +
                    `does not outlast preStop ${sleep}s + drain ${drain[1]}s`);
    }
    const sc = c.securityContext || {};
    if (sc.readOnlyRootFilesystem !== true) problems.push(`${id}: root filesystem not read-only`);
    if (!(pod.securityContext && pod.securityContext.runAsNonRoot) && !sc.runAsNonRoot) {
      problems.push(`${id}: not runAsNonRoot`);
    }
    if (!c.readinessProbe || c.readinessProbe.httpGet.path !== '/readyz') problems.push(`${id}: readiness is not /readyz`);
    if (!c.livenessProbe || c.livenessProbe.httpGet.path !== '/healthz') problems.push(`${id}: liveness is not /healthz`);
  }
}

const services = byKind('Service');
for (const s of services) {
  const pods = podsMatching(s.spec.selector);
  if (pods.length === 0) {
    problems.push(`Service/${s.metadata.name}: selector matches no workload`);
    continue;
  }
  for (const p of s.spec.ports) {
    if (typeof p.targetPort !== 'string') continue;
    const declared = pods.every((w) => w.spec.template.spec.containers.some(
      (c) => (c.ports || []).some((cp) => cp.name === p.targetPort)));
    if (!declared) problems.push(`Service/${s.metadata.name}: targetPort ${p.targetPort} not declared by its pods`);
  }
}
const servicePort = (name, port) => services.some(
  (s) => s.metadata.name === name && s.spec.ports.some((p) => p.name === port.name || p.port === port.number));
for (const ing of byKind('Ingress')) {
  for (const rule of ing.spec.rules || []) {
    for (const p of rule.http.paths) {
      const b = p.backend.service;
      if (!servicePort(b.name, b.port)) problems.push(`Ingress/${ing.metadata.name}: backend ${b.name} has no such port`);
    }
  }
}
for (const hpa of byKind('HorizontalPodAutoscaler')) {
  const ref = hpa.spec.scaleTargetRef;
  if (!workloads.some((w) => w.kind === ref.kind && w.metadata.name === ref.name)) {
    problems.push(`HorizontalPodAutoscaler/${hpa.metadata.name}: no ${ref.kind} ${ref.name}`);
  }
  const d = workloads.find((w) => w.metadata.name === ref.name);
  if (d && d.spec.replicas !== undefined) problems.push(`Deployment/${ref.name}: sets replicas although autoscaled`);
}
for (const pdb of byKind('PodDisruptionBudget')) {
  if (podsMatching(pdb.spec.selector.matchLabels).length === 0) {
    problems.push(`PodDisruptionBudget/${pdb.metadata.name}: selector matches no workload`);
  }
}
for (const sm of byKind('ServiceMonitor')) {
  const targets = services.filter((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels));
  if (targets.length === 0) problems.push(`ServiceMonitor/${sm.metadata.name}: selector matches no Service`);
  for (const ep of sm.spec.endpoints) {
    if (!targets.every((s) => s.spec.ports.some((p) => p.name === ep.port))) {
      problems.push(`ServiceMonitor/${sm.metadata.name}: port ${ep.port} missing on a selected Service`);
    }
  }
}
// 3. NOTES.txt
if (notesFile) {
  const notes = (parse(notesFile).map((d) => d.toJS()).find((d) => d && d.notes) || {}).notes;
  if (!/pushctl push/.test(notes || '')) problems.push('NOTES.txt: does not say how to push a first message');
}

if (problems.length) {
  for (const p of problems) console.error(`invalid: ${p}`);
  process.exit(1);
}
const kinds = objects.map((o) => o.obj.kind).sort().join(', ');
console.log(`valid: ${objects.length} objects (${kinds})`);
