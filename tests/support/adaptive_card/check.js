// Reads an Adaptive Card (JSON) on stdin and parses and validates it with Microsoft's
// Adaptive Cards SDK for a host that supports version 1.4; prints
// {"version": ..., "errors": [...]} where errors lists every parse and validation event.
const AC = require("adaptivecards/dist/adaptivecards.js");

const card = JSON.parse(require("fs").readFileSync(0, "utf8"));
const context = new AC.SerializationContext(new AC.Version(1, 4));
const parsed = new AC.AdaptiveCard();
parsed.parse(card, context);

const errors = [];
for (let i = 0; i < context.eventCount; i++) {
  const event = context.getEventAt(i);
  errors.push(`${AC.ValidationEvent[event.event]}: ${event.message}`);
}
for (const event of parsed.validateProperties().validationEvents) {
  errors.push(`${AC.ValidationEvent[event.event]}: ${event.message}`);
}
console.log(JSON.stringify({ version: parsed.version.toString(), errors }));
