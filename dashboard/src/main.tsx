import { render } from 'preact';
import { App } from './App.js';
import { adoptTokenFromUrl } from './session.js';
import './styles.css';

adoptTokenFromUrl();
const root = document.getElementById('app');
if (root !== null) render(<App />, root);
