import { InMemoryBroker } from '../src/pipeline/memory-broker.js';
import { brokerConformance } from './conformance/broker.js';
import { InMemoryTransport } from '../src/transport/memory-transport.js';
import { InMemoryRunState } from '../src/pipeline/run-state.js';
import { eventTransportConformance } from './conformance/event-transport.js';
import { runStateConformance } from './conformance/run-state.js';

eventTransportConformance('InMemoryTransport', (o) => new InMemoryTransport({ onListenerError: () => undefined, ...o }));

runStateConformance('InMemoryRunState', () => {
  const transport = new InMemoryTransport();
  return { store: new InMemoryRunState({ log: transport }), transport };
});

brokerConformance('InMemoryBroker', () => new InMemoryBroker({ onError: () => undefined }));
