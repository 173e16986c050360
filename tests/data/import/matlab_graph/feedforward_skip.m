function [y1] = feedforward_skip(x1)
%FEEDFORWARD_SKIP neural network simulation function.
%
% Written by tools/make_matlab_fixtures.py in the format MATLAB's genFunction writes, with the
% weights of a net the script defines: not MATLAB's own output (no MATLAB is available here).
%
% [y1] = feedforward_skip(x1) takes these arguments:
%   x = 3xQ matrix, input #1
% and returns:
%   y = 2xQ matrix, output #1
% where Q is the number of samples.

%#ok<*RPMT0>

% ===== NEURAL NETWORK CONSTANTS =====

% Input 1
x1_step1.xoffset = [-2.5603287612062755;-0.32230810026005496;-2.7979039069382705];
x1_step1.gain = [1.9590533877752538;1.1385610182863442;0.6021933233758558];
x1_step1.ymin = [-1.0];

% Layer 1
b1 = [0.8938825514559325;0.4997878421004298;-0.2596957817371617;-0.9883823095772737];
IW1_1 = [-0.8929573829739819 -0.6526932649126781 0.35889001477688054;0.7678087504623079 1.6200628682880016 -0.2638023721435524;0.32090484449869566 -0.4618434002967609 -0.724011649810623;0.19704617132590946 -1.8603730176722573 -1.4948728105127285];

% Layer 2
b2 = [0.2333932958315661;0.27937901900737105;0.1067494794490007];
LW2_1 = [-1.7449533224303977 -0.5832196607665278 -0.19161452396807196 -0.38582265131414933;1.0152688156031795 0.11719180655646047 0.04493070806566597 -1.2631422236496264;-0.10713839622343131 -0.778200964315636 1.0604019007068881 0.7643671497232384];

% Layer 3
b3 = [0.23377914561468272;-0.7995945086982079];
LW3_1 = [-0.005021389633221383 0.27516448219495176 1.3561555151278166 0.09241401910474373;0.6183126654574106 -0.8337673764536886 0.735155058902886 -0.2388704384860889];
LW3_2 = [0.6497487531140652 -0.7669437036976157 -0.5892557521532339;1.188911006539786 -0.7009565795766847 1.053572398180167];

% Output 1
y1_step1.xoffset = [-0.010080511219822785;-1.988392980542867];
y1_step1.gain = [2.6811933070236575;2.793822382011388];
y1_step1.yoffset = [0.0];

% ===== SIMULATION ========

% Dimensions
Q = size(x1,2); % samples

% Input 1
xp1 = mapminmax_apply(x1,x1_step1);

% Layer 1
a1 = tansig_apply(repmat(b1,1,Q) + IW1_1*xp1);

% Layer 2
a2 = tansig_apply(repmat(b2,1,Q) + LW2_1*a1);

% Layer 3
a3 = repmat(b3,1,Q) + LW3_1*a1 + LW3_2*a2;

% Output 1
y1 = mapstd_reverse(a3,y1_step1);
end

% ===== MODULE FUNCTIONS ========

% Map Minimum and Maximum Input Processing Function
function y = mapminmax_apply(x,settings)
  y = bsxfun(@minus,x,settings.xoffset);
  y = bsxfun(@times,y,settings.gain);
  y = bsxfun(@plus,y,settings.ymin);
end

% Sigmoid Symmetric Transfer Function
function a = tansig_apply(n,~)
  a = 2 ./ (1 + exp(-2*n)) - 1;
end

% Map Standard Deviation and Mean Output Reverse-Processing Function
function x = mapstd_reverse(y,settings)
  x = bsxfun(@minus,y,settings.yoffset);
  x = bsxfun(@rdivide,x,settings.gain);
  x = bsxfun(@plus,x,settings.xoffset);
end

