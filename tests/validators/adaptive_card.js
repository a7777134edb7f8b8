// Validate Teams messages with Microsoft's Adaptive Cards SDK (npm
// `adaptivecards` 3.x, loaded from dist/adaptivecards.js under Node).
//
// stdin: a JSON array of Teams Workflows messages. For each: the envelope
// shape, size < 28,000 bytes (as serialised on stdin's element), the card
// parses with no parse events, and validateProperties() reports 0 failures.
// Exit 0 when all pass, 1 on a failure, 3 when adaptivecards is missing.
'use strict';

let AC;
try {
  AC = require('adaptivecards/dist/adaptivecards.js');
} catch (e) {
  console.error(`adaptivecards missing (${e.message}): run npm ci in tests/validators`);
  process.exit(3);
}

const MAX_BYTES = 28000;

function check(msg) {
  const size = Buffer.byteLength(JSON.stringify(msg), 'utf8');
  if (size >= MAX_BYTES) throw new Error(`message is ${size} bytes (limit < ${MAX_BYTES})`);
  if (msg.type !== 'message') throw new Error('type must be "message"');
  if (!Array.isArray(msg.attachments) || msg.attachments.length !== 1) {
    throw new Error('exactly one attachment expected');
  }
  const att = msg.attachments[0];
  if (att.contentType !== 'application/vnd.microsoft.card.adaptive') {
    throw new Error(`bad contentType ${att.contentType}`);
  }
  const content = att.content;
  if (!content || content.type !== 'AdaptiveCard' || content.version !== '1.4') {
    throw new Error('content must be an AdaptiveCard version 1.4');
  }

  const card = new AC.AdaptiveCard();
  const ctx = new AC.SerializationContext();
  card.parse(content, ctx);
  const parseEvents = [];
  for (let i = 0; i < ctx.eventCount; i++) parseEvents.push(ctx.getEventAt(i));
  if (parseEvents.length) {
    throw new Error(`parse events: ${JSON.stringify(parseEvents.map((e) => e.message))}`);
  }
  const results = card.validateProperties();
  if (results.validationEvents.length) {
    throw new Error(`validation failures: ${JSON.stringify(results.validationEvents.map((e) => e.message))}`);
  }
  // The parsed card must still hold everything we sent.
  if (card.getItemCount() !== content.body.length) {
    throw new Error(`card kept ${card.getItemCount()} of ${content.body.length} body elements`);
  }
  if (card.getActionCount() !== (content.actions || []).length) {
    throw new Error(`card kept ${card.getActionCount()} of ${(content.actions || []).length} actions`);
  }
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const messages = JSON.parse(input);
  let failures = 0;
  messages.forEach((msg, i) => {
    try {
      check(msg);
    } catch (e) {
      failures += 1;
      console.log(`message ${i}: ${e.message}`);
    }
  });
  console.log(`adaptivecards: ${messages.length - failures} valid, ${failures} invalid`);
  process.exit(failures ? 1 : 0);
});
