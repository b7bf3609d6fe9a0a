// SASL and ACLs on kafkajs 2.2.4 against idem, run by
// test/interop/security_kafkajs_test.go.
//
// usage: node security.js BOOTSTRAP CAFILE TOPIC
//
// BOOTSTRAP is a SASL_SSL listener whose certificate CAFILE signed; users
// admin (a super user) and alice exist with passwords <name>-pw and alice
// has no ACL.
//
// 1. A wrong SCRAM-SHA-256 password is refused.
// 2. admin (PLAIN) produces five messages to TOPIC.
// 3. admin (SCRAM-SHA-512) lets alice read TOPIC and group js-alice
//    (CreateAcls v1) and lists the ACLs (DescribeAcls).
// 4. alice (SCRAM-SHA-256) consumes the five messages in group js-alice.
// 5. admin deletes alice's ACLs (DeleteAcls); alice's metadata request for
//    TOPIC is then refused.
//
// Prints one JSON object for the Go test to check; exits non-zero with the
// reason on stderr when a step that must succeed fails.
'use strict'

const fs = require('fs')
const { Kafka, logLevel, AclResourceTypes, AclOperationTypes, AclPermissionTypes, ResourcePatternTypes } = require('kafkajs')

const [bootstrap, cafile, topic] = process.argv.slice(2)
const ssl = { ca: [fs.readFileSync(cafile)] }
const client = (mechanism, username, password) => new Kafka({
  clientId: 'idem-interop-kafkajs-security',
  brokers: [bootstrap],
  ssl,
  sasl: { mechanism, username, password },
  logLevel: logLevel.NOTHING,
  retry: { retries: 0 },
  connectionTimeout: 5000,
})
const errInfo = e => ({ name: e.name, type: e.type || '', message: e.message })

async function main() {
  const result = {}

  const intruder = client('scram-sha-256', 'admin', 'guess').admin()
  try {
    await intruder.connect()
    await intruder.listTopics()
    result.wrongPassword = null
  } catch (e) {
    result.wrongPassword = errInfo(e)
  } finally {
    await intruder.disconnect().catch(() => {})
  }

  const producer = client('plain', 'admin', 'admin-pw').producer()
  await producer.connect()
  await producer.send({ topic, messages: [1, 2, 3, 4, 5].map(i => ({ value: `js-secure-${i}` })) })
  await producer.disconnect()

  const admin = client('scram-sha-512', 'admin', 'admin-pw').admin()
  await admin.connect()
  const acl = (resourceType, resourceName) => ({
    resourceType, resourceName, resourcePatternType: ResourcePatternTypes.LITERAL,
    principal: 'User:alice', host: '*', operation: AclOperationTypes.READ, permissionType: AclPermissionTypes.ALLOW,
  })
  await admin.createAcls({ acl: [acl(AclResourceTypes.TOPIC, topic), acl(AclResourceTypes.GROUP, 'js-alice')] })
  const described = await admin.describeAcls({
    resourceType: AclResourceTypes.ANY, resourcePatternType: ResourcePatternTypes.ANY, principal: 'User:alice',
    operation: AclOperationTypes.ANY, permissionType: AclPermissionTypes.ANY,
  })
  result.described = described.resources.map(r => `${r.resourceType}:${r.resourceName}:${r.acls.length}`).sort()

  const alice = client('scram-sha-256', 'alice', 'alice-pw')
  const consumer = alice.consumer({ groupId: 'js-alice', maxWaitTimeInMs: 200 })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  const got = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`alice consumed ${got.length} of 5`)), 20000)
    consumer.on(consumer.events.CRASH, ({ payload }) => { clearTimeout(timer); reject(payload.error) })
    consumer.run({
      eachMessage: async ({ message }) => {
        got.push(message.value.toString())
        if (got.length >= 5) { clearTimeout(timer); resolve() }
      },
    })
  })
  await consumer.disconnect()
  result.consumed = got.sort()

  const deleted = await admin.deleteAcls({ filters: [{
    resourceType: AclResourceTypes.ANY, resourcePatternType: ResourcePatternTypes.ANY, principal: 'User:alice',
    operation: AclOperationTypes.ANY, permissionType: AclPermissionTypes.ANY,
  }] })
  result.deleted = deleted.filterResponses.reduce((n, f) => n + f.matchingAcls.length, 0)
  await admin.disconnect()

  const aliceAdmin = alice.admin()
  await aliceAdmin.connect()
  try {
    await aliceAdmin.fetchTopicMetadata({ topics: [topic] })
    result.afterDelete = null
  } catch (e) {
    result.afterDelete = errInfo(e)
  }
  await aliceAdmin.disconnect()
  process.stdout.write(JSON.stringify(result))
}

main().catch(e => { process.stderr.write(`${e.stack || e}\n`); process.exit(1) })
